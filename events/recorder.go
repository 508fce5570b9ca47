package events

import (
	"context"
	"time"

	"github.com/detourdev/detour/events/logs"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// recordTimeout bounds storing one recorded event.
const recordTimeout = 5 * time.Second

// recorderQueue bounds the events waiting to be stored.
const recorderQueue = 1024

// Recorder stores events that tell of work done (a zone change, a push, an alert delivery
// attempt) beside that work: Record hands one over and returns at once, and Run stores them, in
// the order handed, each within 5 s. The work must not wait for the stream that keeps its
// history: while that stream elects a leader (4 to 9 s after the JetStream node leading it
// died) a publish goes unanswered until its timeout, and a NOTIFY, a push or a webhook's retry
// waiting behind it would be that late. An event that cannot be stored is logged; while 1,024
// wait, the next are dropped (logged once a minute with their count).
type Recorder struct {
	js      jetstream.JetStream
	log     zerolog.Logger
	queue   chan recorded
	dropped *logs.Repeats
}

type recorded struct {
	subject string
	e       Envelope
}

// NewRecorder returns a recorder of events to js; log receives what could not be stored.
func NewRecorder(js jetstream.JetStream, log zerolog.Logger) *Recorder {
	return &Recorder{js: js, log: log, queue: make(chan recorded, recorderQueue), dropped: logs.NewRepeats(time.Minute)}
}

// Record hands e over to be stored on subject, without waiting.
func (r *Recorder) Record(subject string, e Envelope) {
	select {
	case r.queue <- recorded{subject, e}:
	default:
		r.dropped.Gate(r.log.Warn(), "dropped").Str("subject", subject).Str("type", e.Type).Str("event_id", e.ID).
			Int("waiting", recorderQueue).Msg("event not recorded: too many wait to be stored")
	}
}

// Run stores the events handed over until ctx ends; those still waiting then are not stored.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case x := <-r.queue:
			pctx, cancel := context.WithTimeout(ctx, recordTimeout)
			_, err := Publish(pctx, r.js, x.subject, x.e)
			cancel()
			if err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Str("subject", x.subject).Str("type", x.e.Type).Str("event_id", x.e.ID).Msg("event not recorded")
			}
		}
	}
}

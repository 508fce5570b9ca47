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

// recorderQueue bounds the events waiting to be stored, and recorderInFlight those being stored
// at once.
const (
	recorderQueue    = 4096
	recorderInFlight = 256
)

// Recorder stores events that tell of work done (a zone change, a push, an alert delivery
// attempt) beside that work: Record hands one over and returns at once, and Run stores them, in
// the order handed, up to 256 in flight at once and each within 5 s (one at a time, a stream a
// few milliseconds away took a few hundred a second, fewer than a storm of alerts makes). The
// work must not wait for the stream that keeps its history: while that stream elects a leader (4
// to 9 s after the JetStream node leading it died) a publish goes unanswered until its timeout,
// and a NOTIFY, a push or a webhook's retry waiting behind it would be that late. An event that
// cannot be stored is logged (one line for those in flight together); while 4,096 wait, the
// next are dropped (logged once a minute with their count). Those waiting when Run's context
// ends are stored still, within 5 s more: a process stopped after a storm of work would lose
// the records of up to 4,096 pieces of it, and do them again when it starts. The bound is a
// webhook's deliveries in flight at once: a storm of 1,800 alert deliveries on a loaded CI
// machine left over 1,024 waiting behind 256 in flight, and 98 alerts were sent twice.
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

// Run stores the events handed over until ctx ends, and then those being stored and those
// still waiting, for recordTimeout more. Hand it nothing more once ctx ended: what comes after
// it returned is lost.
func (r *Recorder) Run(ctx context.Context) {
	kept, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(recordTimeout, cancel) })
	defer stop()
	for {
		select {
		case <-ctx.Done():
			for batch := r.fill(nil); len(batch) > 0 && kept.Err() == nil; batch = r.fill(nil) {
				r.store(kept, batch)
			}
			return
		case x := <-r.queue:
			r.store(kept, r.fill([]recorded{x}))
		}
	}
}

// fill adds to batch the events waiting, up to recorderInFlight in all.
func (r *Recorder) fill(batch []recorded) []recorded {
	for len(batch) < recorderInFlight {
		select {
		case x := <-r.queue:
			batch = append(batch, x)
		default:
			return batch
		}
	}
	return batch
}

// store publishes batch, all in flight at once (stored in the order published), and waits for
// each to be answered, within recordTimeout. Those not stored are logged in one line: the first
// of them, and how many.
func (r *Recorder) store(ctx context.Context, batch []recorded) {
	pctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(batch))
	errs := make([]error, len(batch))
	for i, x := range batch {
		futures[i], errs[i] = PublishAsync(r.js, x.subject, x.e)
	}
	failed := -1
	n := 0
	for i, x := range batch {
		if errs[i] == nil {
			_, errs[i] = PublishResult(pctx, r.js, futures[i], x.e)
		}
		if errs[i] != nil {
			if failed < 0 {
				failed = i
			}
			n++
		}
	}
	if n > 0 {
		x := batch[failed]
		r.log.Warn().Err(errs[failed]).Str("subject", x.subject).Str("type", x.e.Type).Str("event_id", x.e.ID).Int("events", n).
			Msg("event not recorded")
	}
}

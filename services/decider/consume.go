package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// delivery is one stream message handed to the decider's loop, or only the news that the
// backlog present at start has been read (caughtUp with no subject).
type delivery struct {
	subject string
	// id is the message's Nats-Msg-Id.
	id    string
	data  []byte
	seq   uint64
	stamp time.Time
	// pending is how many matching messages the stream held beyond this one when it was sent.
	pending uint64
	// caughtUp marks the first point where everything the stream held at start was delivered.
	caughtUp bool
	// recreated marks the first delivery of a stream deleted and created again, whose
	// sequences start over (events.Delivery.Recreated).
	recreated bool
	// The reader decodes, so that decoding runs beside the decider's loop: a STATE message
	// into env, a PROBES message into results; err is the decoding error.
	env     events.Envelope
	results []events.ProbeResult
	err     error
}

// decodeState is the STATE reader's decoder.
func decodeState(dl *delivery) { dl.env, dl.err = events.Decode(dl.data) }

// probeDecoder returns the PROBES reader's decoder. The names that repeat from one result to the
// next are interned in a map of the decoder's own, used by the reader's goroutine alone.
func probeDecoder() func(*delivery) {
	names := map[string]string{}
	return func(dl *delivery) { dl.results, dl.err = events.DecodeProbesNamed(dl.data, names) }
}

// consume feeds out with the stream's messages, decoded, through an events.Follower until ctx
// ends: through a lost node or a full outage it resumes after the last message.
func (d *decider) consume(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, bridge events.Bridge, decode func(*delivery), out chan<- delivery) {
	f := events.Follower{JS: d.js, Stream: stream, Start: cfg, Log: d.log, Bridge: bridge}
	f.Run(ctx, func(fd events.Delivery) {
		dl := delivery{subject: fd.Subject, data: fd.Data, seq: fd.Seq, stamp: fd.Stamp, pending: fd.Pending, caughtUp: fd.CaughtUp,
			recreated: fd.Recreated}
		if fd.Msg != nil {
			dl.id = fd.Msg.Headers().Get(jetstream.MsgIDHeader)
			decode(&dl)
		}
		select {
		case out <- dl:
		case <-ctx.Done():
		}
	})
}

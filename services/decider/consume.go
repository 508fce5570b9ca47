package decider

import (
	"context"
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// delivery is one stream message handed to the decider's loop, or only the news that the
// backlog present at start has been read (caughtUp with no subject).
type delivery struct {
	subject string
	data    []byte
	seq     uint64
	stamp   time.Time
	// pending is how many matching messages the stream held beyond this one when it was sent.
	pending uint64
	// caughtUp marks the first point where everything the stream held at start was delivered.
	caughtUp bool
	// The reader decodes, so that decoding runs beside the decider's loop: a STATE message
	// into env, a PROBES message into results; err is the decoding error.
	env     events.Envelope
	results []events.ProbeResult
	err     error
}

// decodeState and decodeProbeResults are the readers' decoders of each stream.
func decodeState(dl *delivery)        { dl.env, dl.err = events.Decode(dl.data) }
func decodeProbeResults(dl *delivery) { dl.results, dl.err = decodeProbes(dl.data) }

// consume feeds out with the stream's messages through an ordered consumer until ctx ends. When
// the consumer fails (NATS unreachable), it waits a second and resumes after the last message.
func (d *decider) consume(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, decode func(*delivery), out chan<- delivery) {
	caught := false
	var last uint64
	for {
		err := d.consumeOnce(ctx, stream, cfg, decode, &caught, &last, out)
		if ctx.Err() != nil {
			return
		}
		d.log.Warn().Err(err).Str("stream", stream).Uint64("stream_seq", last).Msg("consumer interrupted, resuming")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if last > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
		}
	}
}

func (d *decider) consumeOnce(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, decode func(*delivery), caught *bool, last *uint64, out chan<- delivery) error {
	s, err := d.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", stream, err)
	}
	target := s.CachedInfo().State.LastSeq
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(events.FollowOptions()...)
	if err != nil {
		return fmt.Errorf("consume %s: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	send := func(dl delivery) error {
		select {
		case out <- dl:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if info := cons.CachedInfo(); !*caught && (target <= *last || (info != nil && info.NumPending == 0)) {
		*caught = true
		if err := send(delivery{caughtUp: true}); err != nil {
			return err
		}
	}
	for {
		msg, err := it.Next()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue // not a stream message: nothing to decide on
		}
		dl := delivery{subject: msg.Subject(), data: msg.Data(), seq: meta.Sequence.Stream, stamp: meta.Timestamp, pending: meta.NumPending}
		decode(&dl)
		if !*caught && (meta.NumPending == 0 || dl.seq >= target) {
			*caught, dl.caughtUp = true, true
		}
		*last = dl.seq
		if err := send(dl); err != nil {
			return err
		}
	}
}

package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// retryWatch is the wait before the edge tries again to subscribe to its route table.
const retryWatch = time.Second

// watchRoutes follows the edge's route table: the last one stored, then every new one, each
// applied as it arrives. While NATS is unreachable the edge keeps the table it has.
func (e *edge) watchRoutes(ctx context.Context, js jetstream.JetStream) {
	subject := events.RoutesSubject(e.name)
	for {
		err := e.consumeRoutes(ctx, js, subject)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn().Str("subject", subject).Err(err).Msg("route table watch failed; keeping the current table")
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryWatch):
		}
	}
}

func (e *edge) consumeRoutes(ctx context.Context, js jetstream.JetStream, subject string) error {
	cons, err := js.OrderedConsumer(ctx, events.StreamRoutes, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", subject, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, _ := m.Metadata()
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		if err := e.applyTable(m.Data()); err != nil {
			e.log.Warn().Uint64("stream_seq", seq).Err(err).Msg("route table ignored")
		}
	}, events.FollowConsumeOptions()...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", subject, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// applyTable decodes a stored route table and switches every app to it.
func (e *edge) applyTable(b []byte) error {
	t, err := decodeTable(b, e.name)
	if err != nil {
		return err
	}
	for _, r := range t.Apps {
		if a, ok := e.apps[r.App]; ok {
			a.setRoute(r)
		}
	}
	e.log.Debug().Uint64("state_seq", t.StateSeq).Msg("route table applied")
	return nil
}

// decodeTable parses a ROUTES message and checks that edge can use it.
func decodeTable(b []byte, edge string) (events.RouteTable, error) {
	env, err := events.Decode(b)
	if err != nil {
		return events.RouteTable{}, fmt.Errorf("decode route table: %w", err)
	}
	if env.Type != events.TypeRoutesComputed {
		return events.RouteTable{}, fmt.Errorf("decode route table: %w: type %q is not %s", events.ErrMalformed, env.Type, events.TypeRoutesComputed)
	}
	var t events.RouteTable
	if err := env.Payload(&t); err != nil {
		return events.RouteTable{}, fmt.Errorf("decode route table: %w", err)
	}
	if err := t.Check(); err != nil {
		return events.RouteTable{}, fmt.Errorf("decode route table: %w: %w", events.ErrMalformed, err)
	}
	if t.Edge != edge {
		return events.RouteTable{}, fmt.Errorf("decode route table: %w: edge: table is for %q, not %q", events.ErrMalformed, t.Edge, edge)
	}
	return t, nil
}

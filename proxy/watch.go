package proxy

import (
	"context"
	"fmt"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// watchRoutes follows the edge's route table through an events.Follower: the last one stored,
// then every new one, each applied as it arrives. While NATS is unreachable the edge keeps the
// table it has. The consumer is named for the edge: its NATS user may read that consumer only.
func (e *edge) watchRoutes(ctx context.Context, js jetstream.JetStream) {
	subject := events.RoutesSubject(e.name)
	f := events.Follower{JS: js, Stream: events.StreamRoutes, Log: e.log, Name: e.name, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	f.Run(ctx, func(d events.Delivery) {
		if d.Msg == nil {
			return
		}
		e.metrics.Lag("edge", events.StreamRoutes, d.Pending)
		if err := e.applyTable(d.Data); err != nil {
			e.metrics.DecodeFailed("edge", events.StreamRoutes)
			e.malformed.Skip(e.log, err, d.Subject, d.Seq)
			return
		}
		e.saveTable(d.Data)
	})
}

// applyTable decodes a stored route table and switches every app to it.
func (e *edge) applyTable(b []byte) error {
	t, err := decodeTable(b, e.name)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range t.Apps {
		if a, ok := e.apps[r.App]; ok {
			a.setRoute(r)
		}
	}
	e.table = b
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

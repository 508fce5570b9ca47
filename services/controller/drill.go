package controller

import (
	"context"
	"errors"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Simulate has edge seen dead for reason (a drill's simulated failure), whatever its heartbeats
// say, until it is called again with reason "".
func (l *Liveness) Simulate(edge, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.edges[edge]; ok {
		e.simulated = reason
	}
}

// followDrills feeds out with every DRILLS event, from the stream's start, through an
// events.Follower (so a lost node or an outage is survived), until stop is called.
func (c *controller) followDrills(ctx context.Context, out chan<- jetstream.Msg) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	f := events.Follower{JS: c.o.JS, Stream: events.StreamDrills, Log: c.log, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectDrills}, DeliverPolicy: jetstream.DeliverAllPolicy}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(d events.Delivery) {
			if d.Msg == nil {
				return
			}
			select {
			case out <- d.Msg:
			case <-ctx.Done():
			}
		})
	}()
	return func() { cancel(); <-done }
}

// onDrill folds one DRILLS event and has the edges a drill fails seen dead (or alive again).
func (c *controller) onDrill(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	e, err := events.Decode(m.Data())
	var changed bool
	if err == nil {
		changed, err = c.drills.Apply(m.Subject(), meta.Sequence.Stream, e)
	}
	if err != nil {
		c.log.Warn().Str("subject", m.Subject()).Uint64("stream_seq", meta.Sequence.Stream).Err(err).Msg("drill event skipped")
		return
	}
	if !changed {
		return
	}
	for _, edge := range c.o.Config.Edges {
		reason := ""
		if id, ok := c.drills.Edge(edge.Name); ok {
			reason = "drill " + id + ": simulated failure of edge " + edge.Name
		}
		c.live.Simulate(edge.Name, reason)
	}
}

// rollbackDue appends the rollback of every drill past its max_duration or whose runner stopped
// renewing its lease. The append expects the drill's last sequence, so of several replicas (or a
// runner renewing at that moment) one wins and the others see its event.
func (c *controller) rollbackDue(ctx context.Context) {
	for _, r := range c.drills.Due(c.o.Now()) {
		env, err := events.Derived(events.TypeDrillRolledBack, c.o.Name, r.ID, r.Reason, c.o.Now(),
			events.DrillRolledBack{By: c.o.Name, Reason: r.Reason})
		if err != nil {
			continue
		}
		_, err = events.Append(ctx, c.o.JS, events.DrillSubject(r.ID), env, r.Seq)
		if errors.Is(err, events.ErrConflict) {
			continue // another replica rolled it back, or the runner renewed: its event follows
		}
		if err != nil {
			c.log.Warn().Str("drill", r.ID).Err(err).Msg("drill rollback not appended, retrying")
			continue
		}
		c.log.Info().Str("drill", r.ID).Str("reason", r.Reason).Str("event_id", env.ID).Msg("drill rolled back")
	}
}

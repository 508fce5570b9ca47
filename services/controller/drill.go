package controller

import (
	"context"
	"errors"
	"sync"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
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

// drillDelivery is one DRILLS event (msg, nil when the follower only says recreated), and
// whether DRILLS was deleted and created again since the one before (events.Delivery.Recreated).
type drillDelivery struct {
	msg       jetstream.Msg
	recreated bool
}

// followDrills feeds out with every DRILLS event, from the stream's start, through an
// events.Follower (so a lost node or an outage is survived), until stop is called. While its
// consumer's creation goes unanswered it reads by direct gets (events.BridgeNext), so that a
// consumer JetStream placed on a hung node does not keep a lapsed drill in force.
func (c *controller) followDrills(ctx context.Context, out chan<- drillDelivery) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	f := events.Follower{JS: c.o.JS, Stream: events.StreamDrills, Log: c.log, Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectDrills}, DeliverPolicy: jetstream.DeliverAllPolicy}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(d events.Delivery) {
			if d.Msg == nil && !d.Recreated {
				return
			}
			select {
			case out <- drillDelivery{msg: d.Msg, recreated: d.Recreated}:
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
		changed, err = c.drills.Apply(m.Subject(), meta.Sequence.Stream, meta.Timestamp, e)
	}
	if err != nil {
		c.log.Warn().Str("subject", m.Subject()).Uint64("stream_seq", meta.Sequence.Stream).Err(err).Msg("drill event skipped")
		return
	}
	if !changed {
		return
	}
	c.simulateDrills()
}

// restartDrills forgets the drills folded from a DRILLS stream deleted since
// (events.Delivery.Recreated): the new stream's drills, folded from its first message, are the
// ones in force. A drill of the old stream cannot be rolled back in the new one (its rollback
// expects the old stream's sequence, refused every tick as a conflict) and, kept, would have its
// edges seen dead until the controller restarted.
func (c *controller) restartDrills() {
	c.drills = drill.NewView()
	c.simulateDrills()
	c.log.Warn().Msg("drills stream created again; folding it from its first message")
}

// simulateDrills has the edges the drills in force fail seen dead, and the others alive.
func (c *controller) simulateDrills() {
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
// runner renewing at that moment) one wins and the others see its event. Each append runs beside
// the loop, which never waits for DRILLS: while the stream elects a leader (4 to 9 s after a
// JetStream node died) an append goes unanswered for storeTimeout, and the edges' liveness and
// routes must not wait for it. The outcome comes back to the loop on c.rollbacks.
func (c *controller) rollbackDue(ctx context.Context, wg *sync.WaitGroup) {
	for _, r := range c.drills.Due(c.o.Now()) {
		if c.rollingBack[r.ID] {
			continue
		}
		env, err := events.Derived(events.TypeDrillRolledBack, c.o.Name, r.ID, r.Reason, c.o.Now(),
			events.DrillRolledBack{By: c.o.Name, Reason: r.Reason})
		if err != nil {
			continue
		}
		c.rollingBack[r.ID] = true
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, storeTimeout)
			_, err := events.Append(actx, c.o.JS, events.DrillSubject(r.ID), env, r.Seq)
			cancel()
			select {
			case c.rollbacks <- rollback{due: r, env: env, err: err}:
			case <-ctx.Done():
			}
		})
	}
}

// rollback is the outcome of appending a drill's rollback.
type rollback struct {
	due drill.DueRollback
	env events.Envelope
	err error
}

// rolledBack notes the outcome of a rollback append. When DRILLS did not take it (not a
// conflict: the stream has no leader, or NATS is away), the runners could not store their
// renewals either: their silence says nothing, and every drill's lease counts again from now.
func (c *controller) rolledBack(r rollback) {
	delete(c.rollingBack, r.due.ID)
	switch {
	case errors.Is(r.err, events.ErrConflict):
		// another replica rolled it back, or the runner renewed: its event follows
	case r.err != nil:
		c.drills.Grace(c.o.Now())
		c.log.Warn().Str("drill", r.due.ID).Err(r.err).Msg("drill rollback not appended; leases count from now, retrying")
	default:
		c.log.Info().Str("drill", r.due.ID).Str("reason", r.due.Reason).Str("event_id", r.env.ID).Msg("drill rolled back")
	}
}

package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// drillConsumer follows DRILLS from its start: the drills in force are few and their events
// small, and a replica starting mid-drill must know which failures are simulated.
func drillConsumer() jetstream.OrderedConsumerConfig {
	return jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectDrills},
		DeliverPolicy: jetstream.DeliverAllPolicy}
}

// onDrill folds one DRILLS event once the results heard on the wire before DRILLS delivered it
// are folded, as an override waits (see onState): a drill event applies after the results stored
// before it, as detour replay applies it.
func (d *decider) onDrill(ctx context.Context, m delivery) {
	d.hold(ctx, heldEvent{stamp: m.stamp, drill: &m})
}

// applyDrill folds one DRILLS event and puts the drill's simulated failures on (or off) the
// endpoints they cover; a failed region's results are dropped in onProbes.
func (d *decider) applyDrill(ctx context.Context, m delivery) {
	if m.subject == "" {
		d.drillsCaughtUp = true
		d.applyDrills(ctx, "", d.streamNow(d.o.Now())) // the failures restored that no drill explains
		return
	}
	d.applyDrillEvent(ctx, m)
	if m.caughtUp {
		d.drillsCaughtUp = true
		d.applyDrills(ctx, "", m.stamp)
	}
}

// applyDrillEvent folds the DRILLS event m (see applyDrill).
func (d *decider) applyDrillEvent(ctx context.Context, m delivery) {
	if m.err != nil {
		d.log.Warn().Err(m.err).Str("subject", m.subject).Uint64("stream_seq", m.seq).Msg("malformed drill event skipped")
		return
	}
	changed, err := d.drills.Apply(m.subject, m.seq, m.stamp, m.env)
	if err != nil {
		d.log.Warn().Err(err).Str("subject", m.subject).Uint64("stream_seq", m.seq).Msg("drill event skipped")
		return
	}
	if !changed {
		return
	}
	d.applyDrills(ctx, m.env.ID, m.stamp)
}

// restartDrills forgets the drills folded from a DRILLS stream deleted since
// (events.Delivery.Recreated): the new stream's drills, folded from its first message, are the
// ones in force. A drill of the old stream is rolled back by no one (the controller's rollback
// expects the old stream's sequence, which the new one refuses), and kept, would fail its
// endpoints until the decider restarted.
func (d *decider) restartDrills(ctx context.Context, stamp time.Time) {
	d.dropHeld(true)
	d.drills = drill.NewView()
	d.applyDrills(ctx, "", stamp)
	d.log.Warn().Msg("drills stream created again; folding it from its first message")
}

// applyDrills puts the simulated failures of the drills in force on (or off) the endpoints they
// cover; cause is the drill event that changed them.
func (d *decider) applyDrills(ctx context.Context, cause string, stamp time.Time) {
	for _, s := range d.ix.endpoints {
		want := d.drills.Override(s.pool.app.cfg.Name, s.pool.cfg.Name, s.cfg.Name)
		if s.restoredDrill {
			if want == nil && !d.drillsCaughtUp {
				continue // which drills are in force is not known yet
			}
			s.restoredDrill = false
		}
		if (want == nil) == (s.st.Drill == nil) && (want == nil || *want == *s.st.Drill) {
			continue
		}
		d.passUntil(ctx, s, overrideTime(s, stamp)) // the deadlines that passed before it first
		dec, ok := s.st.SetDrill(want, cause, overrideTime(s, stamp), s.pool.app.policy)
		d.rearm(s)
		if ok {
			d.decided(ctx, s, dec)
		}
	}
}

// restoreDrill puts back, on a replica starting cold, the simulated failure of the drill that
// made what STATE last recorded on the endpoint (endpointSlot.drilled), unless an override in
// force explains that status: the status is the drill's, not the probes', and taken for theirs
// it made a drill rolled back after the restart a recovery, held down for a whole hold_down,
// where a replica that ran through the drill brings a healthy endpoint up at once. DRILLS,
// read after STATE, replaces it with the failure of the drill in force, or lifts it once caught
// up (applyDrills) when no drill is in force on the endpoint; the probes are folded meanwhile,
// and going live waits for no DRILLS event.
func (s *endpointSlot) restoreDrill() {
	if s.drilled == "" || s.st.Own != nil || s.st.Pool != nil || s.st.Drill != nil {
		return
	}
	s.st.RestoreDrill(&events.Override{App: s.pool.app.cfg.Name, Pool: s.pool.cfg.Name, Endpoint: s.cfg.Name,
		Action: events.ActionForceDown, Reason: "drill " + s.drilled + ": simulated failure restored from STATE", By: "drill/" + s.drilled})
	s.restoredDrill = true
}

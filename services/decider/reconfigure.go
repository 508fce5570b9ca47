package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
)

// reconfigure takes c, a configuration version Options.Configs delivered. It applies after the
// results stored before it, as detour replay applies it: like an override (see onState), it
// waits for the results heard on the wire before it came to be folded, at most wireGrace, and
// behind the overrides and drill events held before it.
func (d *decider) reconfigure(ctx context.Context, c *config.Config) {
	stamp := c.Stored
	if stamp.IsZero() {
		stamp = d.streamNow(d.o.Now()) // not read from CONFIG: decided from its arrival
	}
	d.hold(ctx, heldEvent{stamp: stamp, config: c})
}

// configure makes c, stored at stored, the configuration decided from then on. Endpoints and
// pools that stay (same app, pool and endpoint names) keep everything the decider knows of
// them: their results, streaks, recorded statuses and overrides; new thresholds apply from their
// next result. New ones, and those whose address changed, start from what STATE last recorded
// for them, if anything, held by the overrides in force on them and on their pools, as at a
// start, and by the drills in force. Decisions queued under the old configuration are appended
// first, or, while the appends are stalled, kept for the next tick.
func (d *decider) configure(ctx context.Context, c *config.Config, stored time.Time) {
	now := d.streamNow(d.o.Now())
	if d.live {
		// Time passes under the old version until the new one was stored, as a tick would have
		// let it: the deadlines that fell before it are decided with the old thresholds, and
		// with the old endpoints, even when this replica's estimate of the streams' time (now)
		// lags behind CONFIG's.
		for _, s := range d.ix.endpoints {
			d.passUntil(ctx, s, stored)
		}
	}
	d.flush(ctx)
	d.settle(ctx)
	// The decisions flush kept queued while the appends are stalled are queued again below, on
	// the endpoints that stay.
	kept := d.queued
	d.queued, d.queuedSlots = nil, nil
	old := d.ix
	ix := newIndex(c)
	var fresh []*endpointSlot
	for k, s := range ix.byName {
		o := old.byName[k]
		if o == nil || o.cfg.Address != s.cfg.Address {
			fresh = append(fresh, s)
			continue
		}
		s.st, s.status, s.seq, s.eventID, s.since, s.dated, s.drilled = o.st, o.status, o.seq, o.eventID, o.since, o.dated, o.drilled
		s.overrideSeq, s.pending, s.contradicted, s.dropped, s.folded = o.overrideSeq, o.pending, o.contradicted, o.dropped, o.folded
		// What the replica sent and has no answer to yet (events.Sent.Unanswered) goes with
		// the endpoint: a decision it kept that looks recorded already is read back first.
		s.hold, s.sent = o.hold, o.sent
	}
	var freshPools []*poolSlot
	for subject, p := range ix.pools {
		if o := old.pools[subject]; o != nil {
			p.status, p.seq, p.since, p.overrideSeq, p.retry, p.contradicted = o.status, o.seq, o.since, o.overrideSeq, o.retry, o.contradicted
			p.drilled = o.drilled
		} else {
			freshPools = append(freshPools, p)
		}
	}
	recorded := d.lastOf(ctx, fresh, freshPools)
	adopted := map[*endpointSlot]decide.Decision{}
	for _, s := range fresh {
		if dec, ok := d.adopt(s, now, recorded); ok {
			adopted[s] = dec
		}
	}
	for _, p := range freshPools {
		if l, ok := recorded[p.subject]; ok {
			p.record(l.seq, l.e)
		}
	}
	d.ix, d.o.Config, d.regions = ix, c, map[string]string{}
	d.cfg.Store(c)
	d.retrying = nil
	for _, a := range ix.apps {
		for _, p := range a.pools {
			if p.retry {
				d.retrying = append(d.retrying, p)
			}
		}
	}
	if every := d.o.tickEvery(c); d.ticker != nil && every != d.tickEvery {
		d.ticker.Reset(every)
		d.tickEvery = every
	}
	d.log.Info().Int("apps", len(c.Apps)).Int("endpoints", len(ix.endpoints)).Stringer("tick", d.tickEvery).Msg("configuration applied")
	for _, x := range kept {
		if s := ix.byName[nameKey{x.s.pool.app.cfg.Name, x.s.pool.cfg.Name, x.s.cfg.Name}]; s != nil && s.cfg.Address == x.s.cfg.Address {
			d.keep(s, x.dec)
		}
	}
	for s, dec := range adopted {
		d.decided(ctx, s, dec)
	}
	d.flush(ctx)
	if d.live {
		for _, p := range ix.pools {
			d.checkPool(ctx, p)
		}
	}
}

// lastOf reads what STATE last recorded on the subjects that a version's new endpoints and
// pools start from (adopt): their state subjects and the overrides of the endpoints and of their
// pools, all in one go (events.AnyLastOf: a few round trips for 10,000 endpoints, where a read a
// subject, one after another, held the replica's every decision for as many), each event dated
// as last dates it. A subject whose read failed is taken as holding nothing, as last's callers
// took it.
func (d *decider) lastOf(ctx context.Context, fresh []*endpointSlot, pools []*poolSlot) map[string]lastEvent {
	subjects := make([]string, 0, 2*len(fresh)+2*len(pools))
	poolOverride := map[*poolSlot]bool{}
	for _, s := range fresh {
		a, p := s.pool.app.cfg.Name, s.pool.cfg.Name
		if !poolOverride[s.pool] {
			poolOverride[s.pool] = true
			subjects = append(subjects, events.OverrideSubject(a, p, ""))
		}
		subjects = append(subjects, events.OverrideSubject(a, p, s.cfg.Name), s.subject)
	}
	for _, p := range pools {
		subjects = append(subjects, p.subject)
	}
	out := make(map[string]lastEvent, len(subjects))
	err := events.AnyLastOf(ctx, d.js, events.StreamState, subjects, func(subject string, seq uint64, e events.Envelope) {
		out[subject] = lastEvent{e: e, seq: seq}
	})
	if err != nil && ctx.Err() == nil {
		d.log.Warn().Err(err).Int("subjects", len(subjects)).Msg("read of what state recorded on new endpoints failed; they start from what was read")
	}
	now := d.streamNow(d.o.Now())
	for subject, l := range out {
		l.e = stamped(l.e, now)
		out[subject] = l
	}
	return out
}

// adopt gives a slot new to the configuration what STATE last recorded on its subject, the
// overrides in force on it and on its pool, as a decider starting cold reads them, and the
// failure a drill in force simulates on it; recorded holds those events (lastOf). It returns the
// decision those make, dated now, when STATE does not record it yet.
func (d *decider) adopt(s *endpointSlot, now time.Time, recorded map[string]lastEvent) (decide.Decision, bool) {
	var dec decide.Decision
	var decided bool
	a, p := s.pool.app.cfg.Name, s.pool.cfg.Name
	for _, scope := range []decide.Scope{decide.ScopePool, decide.ScopeEndpoint} {
		name := ""
		if scope == decide.ScopeEndpoint {
			name = s.cfg.Name
		}
		l, ok := recorded[events.OverrideSubject(a, p, name)]
		var o events.Override
		if !ok || l.e.Type != events.TypeOverrideSet || l.e.Payload(&o) != nil ||
			o.Action != events.ActionForceUp && o.Action != events.ActionForceDown && o.Action != events.ActionDrain {
			continue
		}
		if scope == decide.ScopeEndpoint {
			s.overrideSeq = l.seq
		}
		if dc, ok := s.st.SetOverride(scope, o, l.e.ID, now, s.pool.app.policy); ok {
			dec, decided = dc, true
		}
	}
	if id, _, ok := d.drills.Endpoint(a, p, s.cfg.Name); ok {
		if dc, ok := s.st.SetDrill(d.drills.Override(a, p, s.cfg.Name), d.drills.Drill(id).StepID, now, s.pool.app.policy); ok {
			dec, decided = dc, true
		}
	}
	if l, ok := recorded[s.subject]; ok {
		if _, isTransition := events.TransitionStatus(l.e.Type); isTransition {
			s.record(l.seq, l.e, l.e.Time)
			s.st.Restore(s.status)
		}
	}
	return dec, decided && s.st.Status != s.status
}

// lastEvent is the last event STATE holds on a subject, and its stream sequence.
type lastEvent struct {
	e   events.Envelope
	seq uint64
}

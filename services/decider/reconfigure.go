package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
)

// reconfigure makes c the configuration decided from now on. Endpoints and pools that stay
// (same app, pool and endpoint names) keep everything the decider knows of them: their
// results, streaks, recorded statuses and overrides; new thresholds apply from their next
// result. New ones, and those whose address changed, start from what STATE last recorded for
// them, if anything, held by the overrides in force on them and on their pools, as at a start,
// and by the drills in force. Decisions queued under the old configuration are appended first.
func (d *decider) reconfigure(ctx context.Context, c *config.Config) {
	for _, h := range d.held {
		d.applyHeld(ctx, h) // the held events name slots of the old index
	}
	d.held = nil
	now := d.streamNow(d.o.Now())
	if d.live {
		// Time passes under the old version until now, as a tick would have let it: the
		// deadlines that fell before the new one came are decided with the old thresholds.
		for _, s := range d.ix.endpoints {
			d.passUntil(ctx, s, now)
		}
	}
	d.flush(ctx)
	d.settle(ctx)
	old := d.ix
	ix := newIndex(c)
	adopted := map[*endpointSlot]decide.Decision{}
	poolOverrides := map[string]lastEvent{}
	for k, s := range ix.byName {
		o := old.byName[k]
		if o == nil || o.cfg.Address != s.cfg.Address {
			if dec, ok := d.adopt(ctx, s, now, poolOverrides); ok {
				adopted[s] = dec
			}
			continue
		}
		s.st, s.status, s.seq, s.eventID, s.since, s.dated = o.st, o.status, o.seq, o.eventID, o.since, o.dated
		s.overrideSeq, s.pending, s.contradicted, s.dropped, s.folded = o.overrideSeq, o.pending, o.contradicted, o.dropped, o.folded
	}
	for subject, p := range ix.pools {
		if o := old.pools[subject]; o != nil {
			p.status, p.seq, p.since, p.overrideSeq, p.retry, p.contradicted = o.status, o.seq, o.since, o.overrideSeq, o.retry, o.contradicted
		} else if e, seq, ok, err := d.last(ctx, subject); err == nil && ok {
			p.record(seq, e)
		}
	}
	d.ix, d.o.Config, d.regions = ix, c, map[string]string{}
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

// adopt gives a slot new to the configuration what STATE last recorded on its subject, the
// overrides in force on it and on its pool, as a decider starting cold reads them, and the
// failure a drill in force simulates on it. It returns the decision those make, dated now, when
// STATE does not record it yet. pools holds the pool overrides read so far, so that the
// endpoints of one pool read it once.
func (d *decider) adopt(ctx context.Context, s *endpointSlot, now time.Time, pools map[string]lastEvent) (decide.Decision, bool) {
	var dec decide.Decision
	var decided bool
	a, p := s.pool.app.cfg.Name, s.pool.cfg.Name
	for _, scope := range []decide.Scope{decide.ScopePool, decide.ScopeEndpoint} {
		var l lastEvent
		if scope == decide.ScopePool {
			subject := events.OverrideSubject(a, p, "")
			var read bool
			if l, read = pools[subject]; !read {
				l.e, l.seq, l.ok, l.err = d.last(ctx, subject)
				pools[subject] = l
			}
		} else {
			l.e, l.seq, l.ok, l.err = d.last(ctx, events.OverrideSubject(a, p, s.cfg.Name))
		}
		e, seq, ok, err := l.e, l.seq, l.ok, l.err
		var o events.Override
		if err != nil || !ok || e.Type != events.TypeOverrideSet || e.Payload(&o) != nil ||
			o.Action != events.ActionForceUp && o.Action != events.ActionForceDown && o.Action != events.ActionDrain {
			continue
		}
		if scope == decide.ScopeEndpoint {
			s.overrideSeq = seq
		}
		if dc, ok := s.st.SetOverride(scope, o, e.ID, now, s.pool.app.policy); ok {
			dec, decided = dc, true
		}
	}
	if id, _, ok := d.drills.Endpoint(a, p, s.cfg.Name); ok {
		if dc, ok := s.st.SetDrill(d.drills.Override(a, p, s.cfg.Name), d.drills.Drill(id).StepID, now, s.pool.app.policy); ok {
			dec, decided = dc, true
		}
	}
	e, seq, ok, err := d.last(ctx, s.subject)
	if _, isTransition := events.TransitionStatus(e.Type); err == nil && ok && isTransition {
		s.record(seq, e, e.Time)
		s.st.Restore(s.status)
	}
	return dec, decided && s.st.Status != s.status
}

// lastEvent is what d.last read of a subject.
type lastEvent struct {
	e   events.Envelope
	seq uint64
	ok  bool
	err error
}

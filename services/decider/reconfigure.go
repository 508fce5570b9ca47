package decider

import (
	"context"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// reconfigure makes c the configuration decided from now on. Endpoints and pools that stay
// (same app, pool and endpoint names) keep everything the decider knows of them: their
// results, streaks, recorded statuses and overrides; new thresholds apply from their next
// result. New ones start from what STATE last recorded for them, if anything. Decisions queued
// under the old configuration are appended first.
func (d *decider) reconfigure(ctx context.Context, c *config.Config) {
	d.flush(ctx)
	d.settle(ctx)
	old := d.ix
	ix := newIndex(c)
	for k, s := range ix.byName {
		o := old.byName[k]
		if o == nil || o.cfg.Address != s.cfg.Address {
			d.adopt(ctx, s)
			continue
		}
		s.st, s.status, s.seq, s.eventID, s.since = o.st, o.status, o.seq, o.eventID, o.since
		s.overrideSeq, s.pending, s.contradicted, s.folded = o.overrideSeq, o.pending, o.contradicted, o.folded
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
	d.log.Info().Int("apps", len(c.Apps)).Int("endpoints", len(ix.endpoints)).Msg("configuration applied")
	if d.live {
		for _, p := range ix.pools {
			d.checkPool(ctx, p)
		}
	}
}

// adopt gives a slot new to the configuration what STATE last recorded on its subject.
func (d *decider) adopt(ctx context.Context, s *endpointSlot) {
	e, seq, ok, err := d.last(ctx, s.subject)
	if err != nil || !ok {
		return
	}
	if _, isTransition := events.TransitionStatus(e.Type); isTransition {
		s.record(seq, e)
		s.st.Restore(s.status)
	}
}

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
	old := d.ix
	ix := newIndex(c)
	var fresh []string
	for k, s := range ix.byName {
		o := old.byName[k]
		if o == nil || o.cfg.Address != s.cfg.Address {
			fresh = append(fresh, s.subject)
			continue
		}
		s.st, s.status, s.seq, s.eventID, s.since, s.env = o.st, o.status, o.seq, o.eventID, o.since, o.env
		s.overrideSeq, s.pending, s.firstFail, s.contradicted, s.folded = o.overrideSeq, o.pending, o.firstFail, o.contradicted, o.folded
	}
	for subject, p := range ix.pools {
		if o := old.pools[subject]; o != nil {
			p.status, p.seq, p.since, p.env, p.overrideSeq, p.retry, p.contradicted = o.status, o.seq, o.since, o.env, o.overrideSeq, o.retry, o.contradicted
		} else {
			fresh = append(fresh, subject)
		}
	}
	if len(fresh) > 0 {
		d.adopt(ctx, ix, fresh)
	}
	d.ix, d.o.Config, d.regions = ix, c, map[string]string{}
	d.log.Info().Int("apps", len(c.Apps)).Int("endpoints", len(ix.endpoints)).Msg("configuration applied")
	if d.live {
		d.appendPools(ctx, ix.allPools(), false)
	}
}

// adopt gives the endpoints and pools new to the configuration (their subjects) what STATE last
// recorded for them.
func (d *decider) adopt(ctx context.Context, ix *index, subjects []string) {
	for subject, f := range d.readRecorded(ctx, subjects) {
		if _, isTransition := events.TransitionStatus(f.Env.Type); !isTransition {
			continue
		}
		if s := ix.bySubject[subject]; s != nil {
			s.record(f.Seq, f.Env)
			s.st.Restore(s.status)
		} else if p := ix.pools[subject]; p != nil {
			p.record(f.Seq, f.Env)
		}
	}
}

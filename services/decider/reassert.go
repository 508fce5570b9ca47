package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/state"
)

// reassertAfter is how long STATE may record a status this replica's view contradicts before it
// appends its own view again. Another replica's transition can arrive before the result that
// caused it, but replicas fold the same streams in the same order: a contradiction that outlasts
// this is a forged or foreign event, not a race.
const reassertAfter = time.Second

// maxSkew is how far ahead of the time STATE stored it an event's own time may be.
const maxSkew = time.Minute

// stamped returns e dated no later than maxSkew after stamp, when STATE stored it: an event dated
// in the future (forged, or from a host whose clock is wrong) would otherwise look newer than
// every decision made before that date, and block them.
func stamped(e events.Envelope, stamp time.Time) events.Envelope {
	if !stamp.IsZero() && e.Time.After(stamp.Add(maxSkew)) {
		e.Time = stamp
	}
	return e
}

// noteUnexpected logs and counts a live STATE event that does not fit its subject or what STATE
// recorded there before (prev).
func (d *decider) noteUnexpected(m delivery, prev events.Status, hasPrev bool) {
	if !d.live {
		return
	}
	if why := state.Check(m.subject, prev, hasPrev, m.env); why != "" {
		d.o.Stats.Unexpected.Add(1)
		d.log.Warn().Str("subject", m.subject).Uint64("stream_seq", m.seq).Str("event_id", m.env.ID).
			Str("source", m.env.Source).Str("why", why).Msg("unexpected state event")
	}
}

// contradicts reports whether STATE records a status for the endpoint that the probes this
// replica folded decide otherwise.
func contradicts(s *endpointSlot) bool {
	return s.st.Status != events.StatusUnknown && s.st.Status != s.status && s.st.Voting() > 0
}

// watchEndpoint starts the clock of a contradiction between STATE and the probes, or stops it.
func (d *decider) watchEndpoint(s *endpointSlot) {
	switch {
	case !d.live || !contradicts(s):
		s.contradicted, s.dropped = time.Time{}, nil
	case s.contradicted.IsZero():
		s.contradicted = d.streamNow(d.o.Now())
	}
}

// watchPool starts the clock of a contradiction between a pool's recorded status and what its
// endpoints' recorded statuses imply, or stops it.
func (d *decider) watchPool(p *poolSlot) {
	switch {
	case !d.live || p.latest() == nil || p.verdict().Status == p.status:
		p.contradicted = time.Time{}
	case p.contradicted.IsZero():
		p.contradicted = d.streamNow(d.o.Now())
	}
}

// reassert appends this replica's view over every status STATE has contradicted for
// reassertAfter. When the contradiction is a decision this replica dropped as older than what
// STATE records (due), that decision is appended, dated no earlier than what STATE records: the
// probes made it, and a failover is timed like any other; otherwise the transition's cause is
// the contradicting event. An endpoint's is not re-asserted while this replica is behind in the
// probes (a storm of results can keep it behind for longer than reassertAfter): the results that
// caused the event may be still to fold.
func (d *decider) reassert(ctx context.Context, now time.Time) {
	for _, s := range d.ix.endpoints {
		if s.contradicted.IsZero() || d.failing || d.probesQueued > 0 {
			continue
		}
		if s.pending != nil || !contradicts(s) {
			s.contradicted, s.dropped = time.Time{}, nil
			continue
		}
		if now.Sub(s.contradicted) < reassertAfter {
			continue
		}
		dec := s.st.Explain(s.status, notBefore(now, s.since), s.pool.app.policy, s.eventID,
			"re-asserted: STATE recorded "+string(s.status)+" against the probes")
		if dr := s.dropped; dr != nil && dr.To == s.st.Status {
			dec = *dr
			dec.At = notBefore(dec.At, s.since)
			dec.Reason += "; recorded late: STATE's " + string(s.status) + " was dated after it, and no replica recorded it for " + reassertAfter.String()
		}
		s.contradicted, s.dropped = time.Time{}, nil
		d.o.Stats.Reasserted.Add(1)
		d.log.Warn().Str("subject", s.subject).Str("recorded", string(s.status)).Str("decided", string(s.st.Status)).
			Str("event_id", s.eventID).Str("cause", dec.Cause).Msg("state contradicts the probes, re-asserting")
		d.commit(ctx, s, dec)
	}
	for _, a := range d.ix.apps {
		for _, p := range a.pools {
			if p.contradicted.IsZero() || d.failing || now.Sub(p.contradicted) < reassertAfter {
				continue
			}
			p.contradicted = time.Time{}
			if p.latest() == nil || p.verdict().Status == p.status {
				continue
			}
			d.o.Stats.Reasserted.Add(1)
			d.log.Warn().Str("subject", p.subject).Str("recorded", string(p.status)).Str("decided", string(p.verdict().Status)).
				Msg("state contradicts the pool's endpoints, re-asserting")
			d.poolTransition(ctx, p, true)
		}
	}
}

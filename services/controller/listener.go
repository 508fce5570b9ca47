package controller

import (
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/decide"
)

// listenerPolicy is how the checks of one of an edge's listeners are judged: with the fall, rise
// and stale_after of the check of the app the listener serves, and the app's quorum of regions.
type listenerPolicy struct {
	fall, rise int
	stale      time.Duration
	quorum     float64
}

// listenerView is one probing region's view of one of an edge's listeners; the zero value is
// the view of a region that has sent no result yet.
type listenerView struct {
	fails, oks int
	status     events.Status
	last       time.Time
	// windows are the windows of the region's last two results that said theirs, the latest
	// first (events.ProbeResult.Window).
	windows [2]int64
}

// step folds the result of one check of the listener from window (0: not said), arriving at at,
// into v: fall consecutive failures make it down, rise consecutive passes up. A result of one of
// the region's last two windows is the same check, which a second prober of the region ran
// during a hand-over, and changes nothing, as for an endpoint (decide.Endpoint.Observe): the
// controller hears every copy on the wire.
func (v listenerView) step(ok bool, window int64, at time.Time, p listenerPolicy) listenerView {
	if window != 0 {
		if v.windows[0] == window || v.windows[1] == window {
			return v
		}
		v.windows = [2]int64{window, v.windows[0]}
	}
	v.last = at
	if ok {
		v.fails, v.oks = 0, v.oks+1
		if v.oks >= p.rise {
			v.status = events.StatusUp
		}
	} else {
		v.oks, v.fails = 0, v.fails+1
		if v.fails >= p.fall {
			v.status = events.StatusDown
		}
	}
	return v
}

// listener is what the probing regions see of one of an edge's listeners, by region.
type listener struct {
	policy  listenerPolicy
	regions map[string]listenerView
	// since is when the controller began to watch the listener: at its start, or when a
	// version added it.
	since time.Time
}

// judge returns what the regions with a fresh, decided view of the listener say at now: up when
// the share of them that see it answer meets the app's quorum (decide.Healthy, as for an
// endpoint), down otherwise, unknown when none has such a view.
func (l *listener) judge(now time.Time) events.Status {
	down, regions := 0, 0
	for _, v := range l.regions {
		if v.status == events.StatusUnknown || l.policy.stale > 0 && now.Sub(v.last) > l.policy.stale {
			continue
		}
		regions++
		if v.status == events.StatusDown {
			down++
		}
	}
	switch {
	case regions == 0:
		return events.StatusUnknown
	case !decide.Healthy(regions-down, regions, l.policy.quorum):
		return events.StatusDown
	default:
		return events.StatusUp
	}
}

// pending reports whether l, which has no fresh verdict at now, may still get one: a result
// of it arrived, or the controller began to watch it or to hear again (hearing: back from a
// cut-off or a stall), no longer than its stale_after ago. A listener past that has no recent
// results, and says nothing of its edge.
func (l *listener) pending(now, hearing time.Time) bool {
	latest := l.since
	if hearing.After(latest) {
		latest = hearing
	}
	for _, v := range l.regions {
		if v.last.After(latest) {
			latest = v.last
		}
	}
	return l.policy.stale <= 0 || now.Sub(latest) <= l.policy.stale
}

// judgeListeners returns what the checks of an edge's listeners say of the edge at now, and how
// many of them are down. An edge forwards an app whose local pool is down to its secondary edge,
// and answers the probers' ping itself whatever its apps do, so one listener failing is that
// listener's trouble; the edge itself is dead when it fails them all. So: up when one listener
// is up; down when one is down and every other one is down or has no recent results (never
// checked, or its results stopped, for longer than its stale_after since the controller began
// to watch it or to hear again: see pending), so that a listener nobody checks does not keep a
// wedged edge up; unknown otherwise (no listener checked, or none up and one not judged yet
// whose results may still come: its fall may still be running, and the heartbeats decide).
// It stops at the first listener up, so an edge of thousands of apps costs one listener's
// judgement on most ticks.
func judgeListeners(ls map[string]*listener, now, hearing time.Time) (events.Status, int) {
	down, pending := 0, false
	for _, l := range ls {
		switch l.judge(now) {
		case events.StatusUp:
			return events.StatusUp, 0
		case events.StatusDown:
			down++
		default:
			pending = pending || l.pending(now, hearing)
		}
	}
	if down > 0 && !pending {
		return events.StatusDown, down
	}
	return events.StatusUnknown, down
}

// answering returns how many of ls are up at now, for the reason of an edge's change.
func answering(ls map[string]*listener, now time.Time) int {
	up := 0
	for _, l := range ls {
		if l.judge(now) == events.StatusUp {
			up++
		}
	}
	return up
}

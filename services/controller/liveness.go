package controller

import (
	"fmt"
	"sort"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// Liveness decides which edges are alive from when their heartbeats arrived. It does no I/O:
// the shell feeds it heartbeats, the statuses recorded in STATE and the time, and appends the
// changes it returns.
type Liveness struct {
	edges map[string]*edgeLife
	names []string
}

type edgeLife struct {
	interval time.Duration
	fall     int
	// last is when the last heartbeat arrived (or when watching began); lastID is its event id.
	last     time.Time
	lastID   string
	seen     bool
	recorded events.Status
	// simulated is why a drill has the edge seen dead, whatever its heartbeats say; "" when none.
	simulated string
}

// Change is an edge transition the shell should append to STATE.
type Change struct {
	Edge string
	From events.Status
	To   events.Status
	// Reason is a short sentence for the transition's history.
	Reason string
	// Heartbeat is the id of the heartbeat the change rests on: the one that resumed, or the
	// last one before the silence; "" when none arrived since watching began.
	Heartbeat  string
	Thresholds events.Thresholds
}

// Tolerance is how late past fall × interval an edge's heartbeat may be before it is down: a
// fifth of the interval, so scheduling jitter never takes a live edge down.
func Tolerance(interval time.Duration) time.Duration { return interval / 5 }

// NewLiveness starts watching the edges of c at start: each has fall × interval from then to
// send its first heartbeat.
func NewLiveness(c *config.Config, start time.Time) *Liveness {
	l := &Liveness{edges: map[string]*edgeLife{}}
	for _, e := range c.Edges {
		l.edges[e.Name] = &edgeLife{interval: e.Heartbeat.Interval.D(), fall: e.Heartbeat.Fall, last: start}
		l.names = append(l.names, e.Name)
	}
	sort.Strings(l.names)
	return l
}

// Heartbeat records that edge's heartbeat id arrived at at. It reports false for an edge that is
// not configured.
func (l *Liveness) Heartbeat(edge, id string, at time.Time) bool {
	e, ok := l.edges[edge]
	if !ok {
		return false
	}
	if at.After(e.last) {
		e.last = at
	}
	e.lastID, e.seen = id, true
	return true
}

// Recorded tells l the status STATE holds for edge.
func (l *Liveness) Recorded(edge string, s events.Status) {
	if e, ok := l.edges[edge]; ok {
		e.recorded = s
	}
}

// Due returns the transitions the edges' heartbeats call for at now, in edge name order: down
// for an edge silent for longer than fall × interval (plus Tolerance), up for an edge whose
// heartbeats arrive while STATE does not say up.
func (l *Liveness) Due(now time.Time) []Change {
	var out []Change
	for _, name := range l.names {
		e := l.edges[name]
		silent := now.Sub(e.last)
		deadline := time.Duration(e.fall)*e.interval + Tolerance(e.interval)
		th := events.Thresholds{IntervalMS: e.interval.Milliseconds(), HeartbeatFall: e.fall}
		switch {
		case e.simulated != "" && e.recorded != events.StatusDown:
			out = append(out, Change{Edge: name, From: e.recorded, To: events.StatusDown, Reason: e.simulated, Thresholds: th})
		case e.simulated != "":
		case silent > deadline && e.recorded != events.StatusDown:
			reason := fmt.Sprintf("%d missed heartbeats (interval %s)", e.fall, e.interval)
			if !e.seen {
				reason = fmt.Sprintf("no heartbeat within %d intervals of %s", e.fall, e.interval)
			}
			out = append(out, Change{Edge: name, From: e.recorded, To: events.StatusDown, Reason: reason, Heartbeat: e.lastID, Thresholds: th})
		case silent <= deadline && e.seen && e.recorded != events.StatusUp:
			reason := "heartbeats resumed"
			if e.recorded == events.StatusUnknown {
				reason = "first heartbeat"
			}
			out = append(out, Change{Edge: name, From: e.recorded, To: events.StatusUp, Reason: reason, Heartbeat: e.lastID, Thresholds: th})
		}
	}
	return out
}

package controller

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// Liveness decides which edges are alive from two signals: when their heartbeats arrived, and
// what the probers' checks of their listeners found (each listener is checked like an endpoint,
// from every region, and judged with its own app's check thresholds). While fresh check results
// exist they decide: a wedged edge whose heartbeats flow goes down when every listener is failing
// by its app's quorum of the regions that check it, or has no recent results, and an edge cut off
// from NATS stays up while one of its listeners answers (see judgeListeners).
// Without fresh results the heartbeats decide, counting an edge's silence only over the time the
// controller ran (Awake). It does no I/O: the shell feeds it heartbeats, check results, the
// statuses recorded in STATE and the time, and appends the changes it returns.
// It is safe for concurrent use: the shell records heartbeats and check results as they arrive,
// whatever its loop is busy with.
type Liveness struct {
	mu    sync.Mutex
	edges map[string]*edgeLife
	names []string
	// stall is StallAfter; awake is when the controller last told it ran (Awake), zero before.
	stall time.Duration
	awake time.Time
	// hearing is when the controller last began to hear again, after a cut-off (Grace) or a
	// stall (Awake): a listener without recent results gets its stale_after from then.
	hearing time.Time
}

type edgeLife struct {
	interval time.Duration
	fall     int
	// sends is the interval the edge's last heartbeat said it sends at (0 when none said).
	sends time.Duration
	// last is when the last heartbeat arrived (or when watching began); lastID is its event id.
	last time.Time
	// from is when the edge's silence counts from: last, or later where the controller could
	// not hear (cut off from NATS, or not scheduled at all: Grace, Awake).
	from     time.Time
	lastID   string
	seen     bool
	recorded events.Status
	// simulated is why a drill has the edge seen dead, whatever its heartbeats say; "" when none.
	simulated string
	// listeners are the checks of the edge's listeners, by app.
	listeners map[string]*listener
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

// deadline is how long e may be silent before it is down: fall × interval plus Tolerance, with
// the interval of beats.
func (e *edgeLife) deadline() time.Duration {
	i := e.beats()
	return time.Duration(e.fall)*i + Tolerance(i)
}

// beats is the interval e's heartbeats are expected at: the longer of the configured one and
// the one its last heartbeat announced. A configuration that changes the interval reaches the
// controller and the edge at different moments, and until both run it the edge's heartbeats
// come at the interval the edge runs, not at the one the controller was told: shorter, the
// controller keeps the edge's longer one until a heartbeat announces the change; longer, the
// edge's announces it before the controller learns it.
func (e *edgeLife) beats() time.Duration { return max(e.interval, e.sends) }

// maxAnnounced bounds the interval a heartbeat may announce, as the configuration bounds the
// configured one.
const maxAnnounced = 24 * time.Hour

// Tolerance is how late past fall × interval an edge's heartbeat may be before it is down: a
// fifth of the interval, so scheduling jitter never takes a live edge down.
func Tolerance(interval time.Duration) time.Duration { return interval / 5 }

// NewLiveness starts watching the edges of c at start: each has fall × interval from then to
// send its first heartbeat.
func NewLiveness(c *config.Config, start time.Time) *Liveness {
	l := &Liveness{}
	l.edges, l.names, l.stall = watch(c, start)
	return l
}

// minStallAfter is the least StallAfter: four times the millisecond a watcher's ticker is
// allowed (stallWatch), so that a controller that runs on time is never taken for stalled, however
// short the heartbeat interval.
const minStallAfter = 4 * time.Millisecond

// watch returns the edges of c, by name and in name order, each silent since start, and the
// Tolerance of the shortest heartbeat interval among them (of 1s when there is none), at least
// minStallAfter.
func watch(c *config.Config, start time.Time) (map[string]*edgeLife, []string, time.Duration) {
	edges, names, shortest := map[string]*edgeLife{}, []string{}, time.Second
	for _, e := range c.Edges {
		el := &edgeLife{interval: e.Heartbeat.Interval.D(), fall: e.Heartbeat.Fall, last: start, from: start,
			listeners: map[string]*listener{}}
		shortest = min(shortest, el.interval)
		for _, ea := range e.Apps {
			if a := c.App(ea.App); a != nil {
				el.listeners[a.Name] = &listener{regions: map[string]listenerView{}, since: start,
					policy: listenerPolicy{fall: max(a.Check.Fall, 1), rise: max(a.Check.Rise, 1), stale: a.Check.StaleAfter.D(), quorum: a.Quorum}}
			}
		}
		edges[e.Name] = el
		names = append(names, e.Name)
	}
	sort.Strings(names)
	return edges, names, max(Tolerance(shortest), minStallAfter)
}

// Reconfigure watches the edges of c from now on. Edges that stay keep what l knows of them:
// their last heartbeat and the interval it announced, recorded status, drill and the checks of
// the listeners they keep, judged with c's thresholds. New ones have fall × interval from start
// to send their first heartbeat.
func (l *Liveness) Reconfigure(c *config.Config, start time.Time) {
	edges, names, stall := watch(c, start)
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, e := range edges {
		if o, ok := l.edges[name]; ok {
			e.last, e.from, e.lastID, e.seen, e.recorded, e.simulated = o.last, o.from, o.lastID, o.seen, o.recorded, o.simulated
			e.sends = o.sends
			for app, ls := range e.listeners {
				if ol, ok := o.listeners[app]; ok {
					ls.regions, ls.since = ol.regions, ol.since
				}
			}
		}
	}
	l.edges, l.names, l.stall = edges, names, stall
}

// Heartbeat records that edge's heartbeat id, announcing that the edge sends one every interval
// (0 when it does not say), arrived at at. Until the next one, the edge is down only once
// silent for fall times the longer of that interval and the configured one (see deadline). It
// reports false for an edge that is not configured.
func (l *Liveness) Heartbeat(edge, id string, interval time.Duration, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.edges[edge]
	if !ok {
		return false
	}
	if at.After(e.last) {
		e.last = at
	}
	if at.After(e.from) {
		e.from = at
	}
	e.sends = min(max(interval, 0), maxAnnounced)
	e.lastID, e.seen = id, true
	return true
}

// Grace restarts at from the silence of every edge: the heartbeats that did not arrive before
// were missed by the watcher (cut off from NATS), not sent by no one. An edge that is really
// gone is down fall × interval after from. An edge recorded down stays down: only a heartbeat
// brings it back. A listener without recent results gets its stale_after from from.
func (l *Liveness) Grace(from time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from.After(l.hearing) {
		l.hearing = from
	}
	for _, e := range l.edges {
		if e.from.Before(from) {
			e.from = from
		}
	}
}

// StallAfter is how long the controller may go without running (see Awake) before the gap is a
// stall rather than scheduling jitter: the Tolerance of the shortest heartbeat interval it
// watches, which that jitter is allowed already, and at least 4ms.
func (l *Liveness) StallAfter() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stall
}

// Awake tells l that the controller ran at now, and returns how much of the time since it last
// did is not counted as any edge's silence. The shell calls it often, apart from its loop, and
// before each Due. A gap longer than StallAfter is a stall: the process, or the machine, was not
// scheduled and heard nothing (the heartbeats sent meanwhile wait in its socket, and an edge in
// the same process did not even send them), so only StallAfter of it counts. A controller that
// stalls again and again still counts StallAfter of every gap, and a dead edge is down in the end.
// After a stall, a listener without recent results gets its stale_after from now: the results
// that waited in the socket meanwhile are read within it.
func (l *Liveness) Awake(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	gap, first := now.Sub(l.awake), l.awake.IsZero()
	if first || gap > 0 {
		l.awake = now
	}
	if first || gap <= l.stall {
		return 0
	}
	deaf := gap - l.stall
	l.hearing = now
	for _, e := range l.edges {
		switch to := e.from.Add(deaf); {
		case to.Before(now):
			e.from = to
		case e.from.Before(now):
			e.from = now
		}
	}
	return deaf
}

// Recorded tells l the status STATE holds for edge.
func (l *Liveness) Recorded(edge string, s events.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.edges[edge]; ok {
		e.recorded = s
	}
}

// Probe records the result of a check of edge's listener for app from region, of the check's
// window (events.ProbeResult.Window; 0: not said), arriving at at; a second result of one of the
// region's last two windows counts for nothing (see listenerView.step). It reports false for an edge, or a listener of it, that is not configured.
func (l *Liveness) Probe(edge, app, region string, ok bool, window int64, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.edges[edge]
	if !found {
		return false
	}
	ls, found := e.listeners[app]
	if !found {
		return false
	}
	ls.regions[region] = ls.regions[region].step(ok, window, at, ls.policy)
	return true
}

// Due returns the transitions the edges' signals call for at now, in edge name order. With
// fresh check results: down when every listener is failing by its app's quorum of the regions
// checking it or has no recent results, up when one is answering (see judgeListeners). Without: down for an edge silent for
// longer than fall × interval (plus Tolerance; see deadline), up for an edge whose heartbeats
// arrive. Each reason names the deciding signal.
func (l *Liveness) Due(now time.Time) []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Change
	for _, name := range l.names {
		e := l.edges[name]
		silent := now.Sub(e.from)
		deadline := e.deadline()
		beating := now.Sub(e.last) <= deadline && e.seen
		th := events.Thresholds{IntervalMS: e.beats().Milliseconds(), HeartbeatFall: e.fall}
		if e.simulated != "" {
			if e.recorded != events.StatusDown {
				out = append(out, Change{Edge: name, From: e.recorded, To: events.StatusDown, Reason: e.simulated, Thresholds: th})
			}
			continue
		}
		heartbeats := "heartbeats arrive"
		if !beating {
			heartbeats = "heartbeats stopped"
		}
		ps, down := judgeListeners(e.listeners, now, l.hearing)
		ch := Change{Edge: name, From: e.recorded, Heartbeat: e.lastID, Thresholds: th}
		switch {
		case ps == events.StatusDown && e.recorded != events.StatusDown:
			ch.To = events.StatusDown
			quiet := ""
			if n := len(e.listeners) - down; n > 0 {
				quiet = fmt.Sprintf(", %d without recent results", n)
			}
			ch.Reason = fmt.Sprintf("listener checks: %d of %d listeners failing by their apps' quorum of regions%s (%s)", down, len(e.listeners), quiet, heartbeats)
		case ps == events.StatusUp && e.recorded != events.StatusUp:
			ch.To = events.StatusUp
			ch.Reason = fmt.Sprintf("listener checks: %d of %d listeners answering (%s)", answering(e.listeners, now), len(e.listeners), heartbeats)
		case ps != events.StatusUnknown:
			continue
		case silent > deadline && e.recorded != events.StatusDown:
			ch.To = events.StatusDown
			ch.Reason = fmt.Sprintf("%d missed heartbeats (interval %s)", e.fall, e.beats())
			if !e.seen {
				ch.Reason = fmt.Sprintf("no heartbeat within %d intervals of %s", e.fall, e.beats())
			}
		case beating && e.recorded != events.StatusUp:
			ch.To = events.StatusUp
			ch.Reason = "heartbeats resumed"
			if e.recorded == events.StatusUnknown {
				ch.Reason = "first heartbeat"
			}
		default:
			continue
		}
		if ps != events.StatusUnknown {
			ch.Heartbeat = "" // the checks decided, not a heartbeat
		}
		out = append(out, ch)
	}
	return out
}

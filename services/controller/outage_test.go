package controller

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

func TestAControllerCutOffFromNATSDoesNotTakeTheSilenceForDeadEdges(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	cfg := eventstest.Config(t, edgesDoc)
	stopEast := make(chan struct{})
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	beat(t, ns, "edge-east", 100*time.Millisecond, stopEast)
	startController(t, ns, cfg, "controller-1")
	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, west)) == "U" && types(history(t, ns, events.StreamState, east)) == "U"
	}, "both edges up")

	// NATS is away for ten heartbeat intervals, three times the edges' fall. edge-east dies
	// meanwhile; edge-west keeps beating (its heartbeats are lost with the server).
	ns.Stop()
	close(stopEast)
	time.Sleep(time.Second) // the outage itself
	ns.Restart(t)
	back := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "UD" },
		"edge-east, which really died, down after the outage")
	if took, limit := time.Since(back), 3*100*time.Millisecond+Tolerance(100*time.Millisecond)+reconnectAllowance+2*time.Second; took > limit {
		t.Errorf("edge-east down %s after NATS returned, want within %s", took, limit)
	}
	if got := types(history(t, ns, events.StreamState, west)); got != "U" {
		t.Fatalf("edge-west history %q, want the single up: it never stopped, the controller was cut off", got)
	}
}

func TestGraceRestartsTheSilenceOfLiveEdgesButBringsNoDeadOneBack(t *testing.T) {
	cfg := eventstest.Config(t, edgesDoc)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(cfg, t0)
	l.Heartbeat("edge-west", "hb-w", 0, t0)
	l.Heartbeat("edge-east", "hb-e", 0, t0)
	l.Recorded("edge-west", events.StatusUp)
	l.Recorded("edge-east", events.StatusDown)
	// Ten seconds of silence, all of it while the watcher was cut off; it reconnects at t0+10s.
	back := t0.Add(10 * time.Second)
	l.Grace(back.Add(reconnectAllowance))
	if due := l.Due(back.Add(reconnectAllowance)); len(due) != 0 {
		t.Fatalf("right after the grace: %+v, want nothing (edge-west's silence restarts, edge-east stays down)", due)
	}
	due := l.Due(back.Add(reconnectAllowance + 400*time.Millisecond))
	if len(due) != 1 || due[0].Edge != "edge-west" || due[0].To != events.StatusDown {
		t.Fatalf("fall × interval after the grace with no heartbeat: %+v, want edge-west down", due)
	}
}

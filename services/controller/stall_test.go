package controller

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAControllerThatWasNotScheduledDoesNotTakeItsStallForTheEdgesSilence stalls the whole
// controller for 4s, as a machine starved by another process does to `detour up`: when it runs
// again its loop decides before the heartbeats that waited meanwhile are read. The live edge
// stays up, and the edge that died at the stall is down once silent fall × interval of the time
// the controller ran.
func TestAControllerThatWasNotScheduledDoesNotTakeItsStallForTheEdgesSilence(t *testing.T) {
	b := startBusyLoop(t, edgesDoc) // heartbeats every 100ms, fall 3
	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		b.heartbeat("edge-west")
		b.heartbeat("edge-east")
		b.tick()
		return types(history(t, b.ns, events.StreamState, west)) == "U" && types(history(t, b.ns, events.StreamState, east)) == "U"
	}, "both edges up")
	sentinel := func() {
		b.heartbeat("edge-unknown")
		b.waitLog("heartbeat of an edge that is not configured")
	}
	b.heartbeat("edge-west")
	b.heartbeat("edge-east")
	sentinel()

	// Nothing runs for 4s; edge-east dies meanwhile. The loop's tick comes first, then
	// edge-west's heartbeat.
	b.stall(4 * time.Second)
	woke := b.now()
	b.tick()
	b.heartbeat("edge-west")
	sentinel()

	const interval = 100 * time.Millisecond
	for step := 0; types(history(t, b.ns, events.StreamState, east)) != "UD"; step++ {
		if step == 20 {
			t.Fatalf("edge-east history %q 2s after the stall, want UD", types(history(t, b.ns, events.StreamState, east)))
		}
		b.advance(interval)
		b.heartbeat("edge-west")
		sentinel()
		b.tick()
	}
	h := history(t, b.ns, events.StreamState, east)
	if took, limit := h[1].Time.Sub(woke), 3*interval+Tolerance(interval)+interval; took > limit {
		t.Errorf("edge-east down %s after the controller ran again, want within %s (fall × interval, the tolerance and a step)", took, limit)
	}
	if got := types(history(t, b.ns, events.StreamState, west)); got != "U" {
		t.Fatalf("edge-west history %q, want the single up: it never stopped, the controller was not scheduled", got)
	}
}

package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestADrillGoneWithItsDrillsStreamNoLongerHasAnEdgeSeenDead: the controller folds the drills in
// force from DRILLS' first message. An operator deletes DRILLS during a drill of edge-west and it
// is created again, empty: no drill is in force there, and the controller's own rollback of the
// old one, which expects the old stream's sequence, is refused by the new stream as a conflict
// every tick. edge-west, whose heartbeats flow, is recorded up again rather than seen dead until
// the controller restarts.
func TestADrillGoneWithItsDrillsStreamNoLongerHasAnEdgeSeenDead(t *testing.T) {
	ns := eventstest.Start(t)
	startController(t, ns, eventstest.Config(t, edgesDoc), "controller-1")
	beat(t, ns, "edge-west", 50*time.Millisecond, nil)
	beat(t, ns, "edge-east", 50*time.Millisecond, nil)
	west := events.EdgeStateSubject("edge-west")
	var w string
	eventstest.Eventually(t, 5*time.Second, func() bool { w = types(history(t, ns, events.StreamState, west)); return w == "U" },
		"edge-west up: %q", &w)
	ctx := context.Background()
	publish := func(typ string, data any) {
		t.Helper()
		e, err := events.New(typ, "drill/tester", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, ns.JS, events.DrillSubject("d1"), e); err != nil {
			t.Fatal(err)
		}
	}
	publish(events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "d1", By: "tester", RollbackAt: time.Now().Add(time.Hour)})
	publish(events.TypeDrillStepStarted, events.DrillStep{Step: "fail edge-west",
		Failures: []events.Failure{{Kind: events.FailEdge, Edge: "edge-west"}}})
	eventstest.Eventually(t, 5*time.Second, func() bool { w = types(history(t, ns, events.StreamState, west)); return w == "UD" },
		"edge-west seen dead by the drill: %q", &w)

	if err := ns.JS.DeleteStream(ctx, events.StreamDrills); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { w = types(history(t, ns, events.StreamState, west)); return w == "UDU" },
		"edge-west up again once the drill is gone with its stream: %q", &w)
}

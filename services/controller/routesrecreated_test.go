package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAControllerStoresTheRoutesInARoutesStreamCreatedAgain: an operator deletes ROUTES (or a
// server loses its store) and it is created again, empty. The controller stores every edge's
// routes in it again, as on a first start: it skipped each route equal to the one it had stored
// in the old stream, and an edge that started then found no route of its apps.
func TestAControllerStoresTheRoutesInARoutesStreamCreatedAgain(t *testing.T) {
	ns := eventstest.Start(t)
	startController(t, ns, eventstest.Config(t, edgesDoc), "controller-1")
	beat(t, ns, "edge-west", 50*time.Millisecond, nil)
	beat(t, ns, "edge-east", 50*time.Millisecond, nil)
	west := events.AppRouteSubject("edge-west", "shop")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-west"))) == "U" &&
			types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-east"))) == "U" &&
			len(history(t, ns, events.StreamRoutes, west)) > 0
	}, "both edges up, and edge-west's route of shop")
	// The routes settle: nothing changes from here on.
	for n := 0; n != len(history(t, ns, events.StreamRoutes, west)); {
		n = len(history(t, ns, events.StreamRoutes, west))
		time.Sleep(time.Second)
	}
	ctx := context.Background()
	if err := ns.JS.DeleteStream(ctx, events.StreamRoutes); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 15*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, west)) > 0 },
		"edge-west's route of shop in the new ROUTES")
}

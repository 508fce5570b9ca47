package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
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

// TestARouteTheOldROUTESAcknowledgedIsStoredInTheNewOne: a route the old ROUTES acknowledged,
// whose acknowledgement the loop collected only once it learned that ROUTES was created again,
// was taken for stored in the new stream: computed again, it equalled the route taken, and
// the new ROUTES held no route for that app until it changed. It is sent again there.
func TestARouteTheOldROUTESAcknowledgedIsStoredInTheNewOne(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(2))
	c := handDriven(ns, cfg, "controller-1", zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	c.caught = true
	c.publishRoutes()
	<-ns.JS.PublishAsyncComplete() // acknowledged, not collected
	if err := ns.JS.DeleteStream(ctx, events.StreamRoutes); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	c.routesRecreated()
	settleRoutes(t, c)
	for _, app := range []string{"app0", "app1"} {
		if _, err := ns.Stream(t, events.StreamRoutes).GetLastMsgForSubject(ctx, events.AppRouteSubject("edge-big", app)); err != nil {
			t.Errorf("edge-big's route of %s in the new ROUTES: %v", app, err)
		}
	}
}

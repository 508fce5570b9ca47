package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestARouteRefusedAtOnceIsStoredSoonAfterROUTESHasALeaderAgain: a route whose publish fails at
// once (no responders: ROUTES lost its leader a moment ago) was sent again only a second after it
// was first sent, and only when the loop next ran for something else (a tick, a STATE delivery).
// After a JetStream node died, two such failures added 2 s to an edge's failover. Here no tick
// comes, and STATE delivers nothing more: the route must still follow within a short backoff.
func TestARouteRefusedAtOnceIsStoredSoonAfterROUTESHasALeaderAgain(t *testing.T) {
	ns, js, route := tickLessController(t, false)

	// ROUTES has no leader when w1 goes down: the new route is refused at once. It has one again
	// right after.
	js.On.Store(true)
	recordW1Down(t, ns)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the controller tries to store the new route")
	js.On.Store(false)
	back := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, route)) == 2 }, "edge-west's route after w1 went down")
	if took, limit := time.Since(back), 300*time.Millisecond; took > limit {
		t.Errorf("edge-west's route stored %s after ROUTES had a leader again, want within %s", took.Round(time.Millisecond), limit)
	}
}

// TestAnUnansweredRouteIsNotSentAgainBeforeStoreTimeout: a route ROUTES has not answered may
// still be stored, so it waits storeTimeout before it is sent again, however often the loop
// looks at the routes in flight: sending it at once would only load the stream while it elects.
func TestAnUnansweredRouteIsNotSentAgainBeforeStoreTimeout(t *testing.T) {
	ns, js, _ := tickLessController(t, true)

	// w1 going down changes shop's route on both edges: two routes sent, neither answered.
	js.On.Store(true)
	recordW1Down(t, ns)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the controller tries to store the new routes")
	sent := time.Now()
	for time.Since(sent) < storeTimeout-200*time.Millisecond {
		if n := js.Refused.Load(); n > 2 {
			t.Fatalf("%d routes sent %s after the first, want the 2 of the change only: an unanswered route was sent again before %s",
				n, time.Since(sent).Round(time.Millisecond), storeTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	eventstest.Eventually(t, 2*time.Second, func() bool { return js.Refused.Load() > 2 }, "the routes sent again once storeTimeout passed")
}

// tickLessController runs a controller that gets no ticks, its ROUTES publishes passing through
// an electing JetStream (hang: unanswered rather than refused while on), and returns the server,
// that JetStream and edge-west's route subject for shop, once its first route is stored.
func tickLessController(t *testing.T, hang bool) (*eventstest.Server, *eventstest.Electing, string) {
	t.Helper()
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.routes.", hang)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: eventstest.Config(t, edgesDoc), Name: "controller-1",
			Ticks: make(chan time.Time), Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	route := events.AppRouteSubject("edge-west", "shop")
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, route)) == 1 }, "edge-west's first route for shop")
	return ns, js, route
}

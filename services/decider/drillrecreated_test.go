package decider_test

import (
	"context"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestADrillGoneWithItsDrillsStreamIsNoLongerInForce: the decider folds the drills in force from
// DRILLS' first message. An operator deletes DRILLS during a drill and it is created again,
// empty: no drill is in force there, and none ever rolls back the old one (the controller's
// rollback expects the old stream's sequence, which the new one refuses). The pool the drill
// failed comes back as its probes say, rather than staying down until the decider restarts.
func TestADrillGoneWithItsDrillsStreamIsNoLongerInForce(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "local"}
	west.send("shop", "west", "w1", true)
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	ctx := context.Background()
	if err := srv.JS.DeleteStream(ctx, events.StreamDrills); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
}

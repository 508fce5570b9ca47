package decider_test

import (
	"context"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestADeciderRecordsWhatTheProbesSayInAStateStreamCreatedAgain: an operator deletes STATE (or a
// server loses its store) and it is created again, empty, its sequences starting over at 1. The
// decider records in it what the probes say (an endpoint down, and its pool), as it would have
// on a first start, and goes on deciding against the new stream: the endpoint comes back.
func TestADeciderRecordsWhatTheProbesSayInAStateStreamCreatedAgain(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	ctx := context.Background()
	if err := srv.JS.DeleteStream(ctx, events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
}

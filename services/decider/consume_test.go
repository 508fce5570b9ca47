package decider_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestTheDecidersConsumerTakesNoEdgeListenerBatch: the batches of edge-listener results (a third
// of all results, which the controller follows) stay out of the decider's PROBES reading; the
// endpoints' results around them are folded.
func TestTheDecidersConsumerTakesNoEdgeListenerBatch(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for i := range 3 {
		p.send("shop", "west", "w1", false)
		if _, err := srv.JS.Publish(t.Context(), events.EdgeProbeBatchSubject("eu", "p1"), []byte("not even JSON")); err != nil {
			t.Fatalf("edge batch %d: %v", i, err)
		}
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() >= 3 }, "fewer than 3 PROBES messages processed")
	if got := r.stats.Messages.Load(); got != 3 {
		t.Errorf("the decider processed %d PROBES messages, want the 3 endpoint results and none of the 3 edge batches", got)
	}
	if got := r.stats.Malformed.Load(); got != 0 {
		t.Errorf("%d malformed messages, want 0", got)
	}
}

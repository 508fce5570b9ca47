package decider_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// forge publishes a failed result for shop/west/w1 whose payload names payloadRegion, on the
// subject of subjectRegion.
func forge(t *testing.T, srv *eventstest.Server, payloadRegion, subjectRegion string) {
	t.Helper()
	r := events.ProbeResult{At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: payloadRegion, Prober: "forger", Check: "http"}
	e, err := events.New(events.TypeProbeCompleted, "forger", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.ProbeSubject(subjectRegion, "shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
}

func TestResultsFromInventedRegionsDoNotTakeAHealthyEndpointDown(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, "regions: [us-west]\n"+shopYAML), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "us-west"}
	west.send("shop", "west", "w1", true)
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	// Without the check, three failing regions out of four would outvote us-west (quorum 0.5).
	for _, region := range []string{"mars", "venus", "pluto"} {
		p := &prober{t: t, js: srv.JS, region: region}
		for range 3 {
			p.send("shop", "west", "w1", false)
		}
	}
	for range 3 {
		forge(t, srv, "us-west", "mars") // a configured region's name on another region's subject
		forge(t, srv, "mars", "us-west") // an unconfigured region's name on a configured subject
	}
	west.send("shop", "west", "w1", true)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return r.stats.Foreign.Load() == 15 && r.stats.Results.Load() == 3
	}, "foreign %d (want 15), results folded %d (want 3)", r.stats.Foreign.Load, r.stats.Results.Load)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
}

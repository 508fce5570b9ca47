package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestAControllerOfTwoThousandEdgesStartsWithinAFewRoundTrips: starting, the controller reads
// the route ROUTES holds for each app of each edge, so as not to store an unchanged one again.
// It read one edge at a time: with an edge of one app each, one round trip per edge, and 2,000
// edges behind a 10 ms round trip started the controller (edge liveness, routes) 20 s late;
// its routes, which wait for that read (edge liveness no longer does), are computed as late.
func TestAControllerOfTwoThousandEdgesStartsWithinAFewRoundTrips(t *testing.T) {
	const edges = 2000
	ns := eventstest.Start(t)
	link := eventstest.NewSlowLink(t, ns.URL)
	link.Delay(5*time.Millisecond, 5*time.Millisecond)
	_, js := eventstest.ConnectJS(t, link.URL)
	cfg := eventstest.Config(t, manyEdgesDoc(edges))
	var logs eventstest.Logs
	start := time.Now()
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: cfg, Name: "controller-1", Ticks: make(chan time.Time), Log: zerolog.New(&logs)})
	})
	eventstest.Eventually(t, 60*time.Second, func() bool { return logs.Count("stored routes read") == 1 }, "the controller read the stored routes")
	took := time.Since(start)
	t.Logf("the controller of %d edges read their routes %s after it was run, behind a 10 ms round trip", edges, took.Round(time.Millisecond))
	if limit := 5 * time.Second; took > limit {
		t.Errorf("the controller of %d edges read their routes %s after it was run, want within %s", edges, took.Round(time.Millisecond), limit)
	}
}

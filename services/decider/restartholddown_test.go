package decider_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestADeciderRestartedMidHoldDownHoldsTheEndpointAsAnUnrestartedOne: w1 fails, then passes
// every 50 ms; its hold-down of 3s runs from its first pass. The decider is restarted 2.3 s
// into it, with stale_after 2s: the replacement reads PROBES back far enough to find that first
// pass, and brings w1 up at the hold-down's end caused by it, as the decider it replaced (or
// detour replay) would have. It read back stale_after, where the hold-down began after its
// first pass read, 2 s before its start, and it held w1 down 0.3 s longer.
func TestADeciderRestartedMidHoldDownHoldsTheEndpointAsAnUnrestartedOne(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h",
		"interval: 50ms, timeout: 40ms, fall: 1, rise: 1, stale_after: 2s", 1)
	doc = strings.Replace(doc, "    pools:", "    hold_down: 3s\n    pools:", 1)
	cfg := eventstest.Config(t, doc)
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	healthy := p.send("shop", "west", "w1", true)
	healthyAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	// The prober checks every 50 ms, as configured: the results are the test's subject.
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	restarted := false
	deadline := time.Now().Add(10 * time.Second)
	for len(history(t, srv)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("w1 not up 10 s after its hold-down of 3s began: STATE history %q", history(t, srv))
		}
		<-checks.C
		if !restarted && time.Since(healthyAt) > 2300*time.Millisecond {
			d1.stop()
			start(t, srv.JS, cfg, "decider/a")
			restarted = true
		}
		p.send("shop", "west", "w1", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
	if !restarted {
		t.Fatal("w1 came up before the decider was restarted")
	}
	up := stateOf(t, srv)[2].Env
	if want := healthyAt.Add(3 * time.Second); !up.Time.Equal(want) || up.Cause != healthy {
		t.Errorf("w1 up at %s (%s after its first pass) caused by %q, want at the hold-down's end %s caused by its first pass %q",
			up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt), up.Cause, want.Format(time.RFC3339Nano), healthy)
	}
}

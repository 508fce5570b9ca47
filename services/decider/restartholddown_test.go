package decider_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestADeciderRestartedMidHoldDownNeverBringsTheEndpointUpEarly: w1 fails, then passes every
// 50 ms; its hold-down of 3s runs from its first pass. The decider is restarted 2.3 s into it,
// with stale_after 2s, so it reads back 2 s of PROBES and finds the hold-down from a later pass
// than the one it began with: w1 comes up late (by up to the 0.3 s the read missed), never before
// 3 s of passes, and within a hold-down of the restart. A starting decider does not read the
// whole hold_down back: at 10,000 endpoints a hold_down of 10m would keep it from going live for
// half a minute, recording no failover meanwhile.
func TestADeciderRestartedMidHoldDownNeverBringsTheEndpointUpEarly(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h",
		"interval: 50ms, timeout: 40ms, fall: 1, rise: 1, stale_after: 2s", 1)
	doc = strings.Replace(doc, "    pools:", "    hold_down: 3s\n    pools:", 1)
	cfg := eventstest.Config(t, doc)
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	p.send("shop", "west", "w1", true)
	healthyAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	// The prober checks every 50 ms, as configured: the results are the test's subject.
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	var restartedAt time.Time
	deadline := time.Now().Add(10 * time.Second)
	for len(history(t, srv)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("w1 not up 10 s after its hold-down of 3s began: STATE history %q", history(t, srv))
		}
		<-checks.C
		if restartedAt.IsZero() && time.Since(healthyAt) > 2300*time.Millisecond {
			d1.stop()
			restartedAt = time.Now()
			start(t, srv.JS, cfg, "decider/a")
		}
		p.send("shop", "west", "w1", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
	if restartedAt.IsZero() {
		t.Fatal("w1 came up before the decider was restarted")
	}
	up := stateOf(t, srv)[2].Env
	if earliest := healthyAt.Add(3 * time.Second); up.Time.Before(earliest) {
		t.Errorf("w1 up at %s, %s after its first pass: before its hold-down of 3s ended", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
	if latest := restartedAt.Add(3 * time.Second); up.Time.After(latest) {
		t.Errorf("w1 up at %s, %s after the restart: more than a hold-down", up.Time.Format(time.RFC3339Nano), up.Time.Sub(restartedAt))
	}
}

//go:build unix

package controller

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestAControllerWaitingOnAnUnansweringROUTESDoesNotRecomputeRoutesEvery50ms: an edge fronts
// more apps than the routes the controller keeps in flight, and ROUTES answers nothing. The
// routes past the bound can only be sent once an acknowledgement makes room, yet the loop,
// woken every 50 ms to look at the routes in flight, computed all of them again each time: a
// controller idle but for the wait burned a large share of a core for as long as ROUTES was gone.
func TestAControllerWaitingOnAnUnansweringROUTESDoesNotRecomputeRoutesEvery50ms(t *testing.T) {
	const apps = maxRoutesInFlight + 8000
	var doc strings.Builder
	doc.WriteString("zones: [{name: demo.test}]\napps:\n")
	for i := range apps {
		fmt.Fprintf(&doc, "  - name: app%d\n    fqdn: app%d.demo.test\n    pools:\n      - {name: west, region: us-west, endpoints: [{name: w1, address: \"127.0.0.11:8081\"}]}\n", i, i)
	}
	doc.WriteString("edges:\n  - name: edge-west\n    region: us-west\n    hostname: edge-west.demo.test\n    address: 127.0.0.21\n    heartbeat: {interval: 100ms, fall: 3}\n    apps:\n")
	for i := range apps {
		fmt.Fprintf(&doc, "      - {app: app%d, listen: \"127.0.0.21:%d\"}\n", i, 10000+i)
	}
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.routes.", true)
	js.On.Store(true)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: eventstest.Config(t, doc.String()), Name: "controller-1",
			Ticks: make(chan time.Time), Log: zerolog.Nop()})
	})
	eventstest.Eventually(t, 10*time.Second, func() bool { return js.Refused.Load() >= maxRoutesInFlight }, "the controller sends as many routes as it keeps in flight")

	// Nothing comes but the loop's own wake-ups; within storeTimeout nothing is due again.
	cpu := func() time.Duration {
		var u syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
			t.Fatal(err)
		}
		return time.Duration(u.Utime.Nano() + u.Stime.Nano())
	}
	start, wall := cpu(), time.Now()
	for time.Since(wall) < storeTimeout*8/10 {
		time.Sleep(10 * time.Millisecond)
	}
	used, took := cpu()-start, time.Since(wall)
	t.Logf("CPU %s over %s while ROUTES answers nothing", used.Round(time.Millisecond), took.Round(time.Millisecond))
	if limit := took / 8; used > limit {
		t.Errorf("the controller used %s of CPU in %s while waiting on ROUTES, want under %s: it computes the routes it cannot send every 50 ms",
			used.Round(time.Millisecond), took.Round(time.Millisecond), limit.Round(time.Millisecond))
	}
}

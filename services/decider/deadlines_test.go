package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
)

// TestAHoldDownThatRanOutBeforeTheNextResultIsRecordedWhetherOrNotATickCame: an endpoint healthy
// again is held down for hold_down; the next result, a failure that completes fall, comes after
// the hold-down ran out. The endpoint was up from the hold-down's end until that failure, and
// STATE says so (as `detour replay` re-decides it) however the decider's ticks fell: here none
// comes at all, where the failure used to be folded first and the recovery was never recorded.
func TestAHoldDownThatRanOutBeforeTheNextResultIsRecordedWhetherOrNotATickCame(t *testing.T) {
	srv := eventstest.Start(t)
	p, healthy, healthyAt := ranOutHoldDown(t, srv, nil)
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	upAtHoldDownsEnd(t, srv, healthy, healthyAt)
}

// TestAHoldDownThatRanOutBeforeANewVersionCameIsDecidedWithTheOldThresholds: a version that
// lengthens hold_down comes after the hold-down in force ran out, before a tick decided it. The
// endpoint came back under the version that was active then, as `detour replay` re-decides it:
// the new version does not hold it down for its longer hold_down.
func TestAHoldDownThatRanOutBeforeANewVersionCameIsDecidedWithTheOldThresholds(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config)
	_, healthy, healthyAt := ranOutHoldDown(t, srv, func(o *decider.Options) { o.Configs = configs })
	configs <- eventstest.Config(t, strings.Replace(strings.Replace(shopYAML, "fall: 3, rise: 2", "fall: 1, rise: 1", 1),
		"    pools:", "    hold_down: 1h\n    pools:", 1))
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
	upAtHoldDownsEnd(t, srv, healthy, healthyAt)
}

// TestAHoldDownThatRanOutBeforeAnOverrideIsRecordedBeforeIt: the hold-down of an endpoint healthy
// again runs out, then an operator forces it down before a tick came. The endpoint was up from
// the hold-down's end until the override, and STATE says so, as `detour replay` re-decides it.
func TestAHoldDownThatRanOutBeforeAnOverrideIsRecordedBeforeIt(t *testing.T) {
	srv := eventstest.Start(t)
	ranOutHoldDown(t, srv, nil)
	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "alice@box", Reason: "deploy", Action: events.ActionForceDown}
	if err := override.Set(context.Background(), srv.JS, o); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
}

// ranOutHoldDown starts a decider (fall 1, rise 1, hold_down 100ms, no tick, and as opt says)
// that takes w1 down on a failure, then has w1 pass and returns once its hold-down ran out,
// undecided: the prober, the passing result's id, and when PROBES stored it.
func ranOutHoldDown(t *testing.T, srv *eventstest.Server, opt func(*decider.Options)) (p *prober, healthy string, healthyAt time.Time) {
	t.Helper()
	doc := strings.Replace(shopYAML, "fall: 3, rise: 2", "fall: 1, rise: 1", 1)
	doc = strings.Replace(doc, "    pools:", "    hold_down: 100ms\n    pools:", 1)
	never := make(chan time.Time)
	start(t, srv.JS, eventstest.Config(t, doc), "d1", func(o *decider.Options) {
		o.Ticks = never
		if opt != nil {
			opt(o)
		}
	})
	p = &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	healthy = p.send("shop", "west", "w1", true)
	healthyAt = stamp(t, srv, events.StreamProbes, p.lastSeq)
	for time.Since(healthyAt) < 150*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the hold-down runs out: the subject of the test, not a wait
	}
	return p, healthy, healthyAt
}

// upAtHoldDownsEnd checks that STATE's third event, w1 up, was caused by the passing result
// healthy and dated at the end of its hold-down.
func upAtHoldDownsEnd(t *testing.T, srv *eventstest.Server, healthy string, healthyAt time.Time) {
	t.Helper()
	up := stateOf(t, srv)[2].Env
	if want := healthyAt.Add(100 * time.Millisecond); !up.Time.Equal(want) || up.Cause != healthy {
		t.Errorf("up at %s caused by %q, want at the hold-down's end %s caused by %q", up.Time, up.Cause, want, healthy)
	}
}

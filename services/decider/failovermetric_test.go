package decider_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
)

// failovers reads detour_failover_seconds: its observations and their sum.
func failovers(t *testing.T, m *metrics.Metrics) (n uint64, sum float64) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "detour_failover_seconds" {
			for _, s := range f.GetMetric() {
				n += s.GetHistogram().GetSampleCount()
				sum += s.GetHistogram().GetSampleSum()
			}
		}
	}
	return n, sum
}

// waitTransitionsCounted waits until the decider has counted n endpoint and n pool transitions
// as newly stored, so that the failover times of the endpoints' are in the histogram too. STATE
// may hold a transition before the decider has handled its acknowledgement (appends are
// pipelined); the decider handles acknowledgements in the order it sent the appends, and sends
// a pool's after the endpoint transition that changed the pool, so once the pool's is counted,
// the endpoint's failover time is observed. Waiting for the endpoint count as well makes a test
// fail, rather than pass unchecked, where an endpoint's acknowledgement came too late and its
// append was sent again: the second acknowledgement is a duplicate, which the decider counts
// neither as a transition nor as a failover.
func waitTransitionsCounted(t *testing.T, st *decider.Stats, n uint64) {
	t.Helper()
	var endpoints, pools uint64
	eventstest.Eventually(t, 5*time.Second, func() bool {
		endpoints, pools = st.Transitions.Load(), st.PoolTransitions.Load()
		return endpoints >= n && pools >= n
	}, "the decider counted %v endpoint and %v pool transitions as stored, want %v of each", &endpoints, &pools, n)
}

func withMetrics(m *metrics.Metrics) func(*decider.Options) {
	return func(o *decider.Options) { o.Metrics = m }
}

// failedOverByProbes starts a decider with metrics, and a prober in eu that brings w1 up with two
// passing results and takes it down with three failing ones.
func failedOverByProbes(t *testing.T) (*eventstest.Server, *metrics.Metrics, *decider.Stats, *prober) {
	t.Helper()
	srv := eventstest.Start(t)
	m := metrics.New()
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a", withMetrics(m))
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, r.stats, 2)
	return srv, m, r.stats, p
}

func TestADownTransitionAnOperatorCausedIsNoFailoverTime(t *testing.T) {
	srv, m, st, p := failedOverByProbes(t)
	ctx := context.Background()
	if n, _ := failovers(t, m); n != 1 {
		t.Fatalf("after the probes took w1 down, detour_failover_seconds has %d observations, want 1", n)
	}

	// The operator forces the failing endpoint up, then lets the probes decide again: the down
	// transition that follows is the override's, however long ago the failures began.
	own := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "bob@box", Reason: "try it", Action: events.ActionForceUp}
	if err := override.Set(ctx, srv.JS, own); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	p.send("shop", "west", "w1", false)
	own.Action, own.Reason = "", "it still fails"
	if err := override.Clear(ctx, srv.JS, own); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, st, 4)
	if n, sum := failovers(t, m); n != 1 {
		t.Errorf("after an override's down transition, detour_failover_seconds has %d observations (sum %.3fs), want 1", n, sum)
	}
}

func TestAFailoverIsTimedFromTheStreakThatTookTheEndpointDownNotAnEarlierOne(t *testing.T) {
	srv, m, st, p := failedOverByProbes(t)
	_, first := failovers(t, m)

	// The endpoint stays down a while, recovers, and fails again at once: no result passed
	// between its up transition and the second streak of failures.
	const gap = time.Second
	time.Sleep(gap) // not synchronisation: the time the endpoint spends down
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, st, 4)
	n, sum := failovers(t, m)
	if n != 2 {
		t.Fatalf("detour_failover_seconds has %d observations, want 2", n)
	}
	if second := sum - first; second >= gap.Seconds() {
		t.Errorf("the second failover took %.3fs by the histogram, timed from the first streak of failures %v earlier; want under %v", second, gap, gap)
	}
}

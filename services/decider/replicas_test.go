package decider_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestOverridesWinOverProbesAndTheHistorySaysWhoAndWhy(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	ctx := context.Background()
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	set := func(o events.Override) {
		t.Helper()
		if err := override.Set(ctx, srv.JS, o); err != nil {
			t.Fatal(err)
		}
	}
	clear := func(o events.Override) {
		t.Helper()
		if err := override.Clear(ctx, srv.JS, o); err != nil {
			t.Fatal(err)
		}
	}
	pool := events.Override{App: "shop", Pool: "west", By: "alice@box", Reason: "deploy", Action: events.ActionDrain}
	own := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "bob@box", Reason: "canary", Action: events.ActionForceUp}
	set(pool)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:drained", "pool.shop.west:down")
	view := state.NewView()
	for _, m := range stateOf(t, srv) {
		if _, err := view.Apply(m.Subject, 0, m.Env); err != nil {
			t.Fatal(err)
		}
	}
	if west := eventstest.Config(t, shopYAML).App("shop").Pool("west"); view.Serving("shop", "west", "w1") || view.PoolAvailable("shop", west) {
		t.Errorf("the DNS server's view still answers the drained endpoint (serving %v, pool available %v)",
			view.Serving("shop", "west", "w1"), view.PoolAvailable("shop", west))
	}
	p.send("shop", "west", "w1", true) // probes keep folding but do not win
	set(own)
	clear(events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "bob@box", Reason: "canary done"})
	clear(events.Override{App: "shop", Pool: "west", By: "alice@box", Reason: "deployed"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:drained", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:drained", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")

	var reasons []string
	for _, s := range stateOf(t, srv) {
		if s.Subject == events.EndpointStateSubject("shop", "west", "w1") {
			var tr events.Transition
			if err := s.Env.Payload(&tr); err != nil {
				t.Fatal(err)
			}
			reasons = append(reasons, tr.Reason)
		}
	}
	want := []string{
		"eu: 2 consecutive successes (rise 2); 1 of 1 voting regions see it up (quorum 0.5)",
		"pool override drain by alice@box: deploy",
		"override force_up by bob@box: canary",
		"override cleared by bob@box: canary done",
		"pool override cleared by alice@box: deployed; 1 of 1 voting regions see it up (quorum 0.5)",
	}
	if !reflect.DeepEqual(reasons, want) {
		t.Errorf("endpoint reasons:\n got %q\nwant %q", reasons, want)
	}
}

func TestTwoDecidersRecordEachChangeOnceAndOneKilledMidFailoverDelaysNothing(t *testing.T) {
	srv := eventstest.Start(t)
	c := eventstest.Config(t, shopYAML)
	a := start(t, srv.JS, c, "decider/a")
	b := start(t, srv.JS, c, "decider/b")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	p.send("shop", "west", "w1", false)
	p.send("shop", "west", "w1", false)
	eventstest.Eventually(t, 5*time.Second, func() bool { return a.stats.Messages.Load() == 4 }, "decider/a did not fold 4 results")
	a.stop() // killed with two of three failures folded
	p.send("shop", "west", "w1", false)
	// The survivor decides on the same result: well within one check interval (1s).
	var got []string
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down"}
	eventstest.Eventually(t, time.Second, func() bool {
		got = history(t, srv)
		return reflect.DeepEqual(got, want)
	}, "STATE history is %q, want %q", &got, want)
	// The survivor counts its appends once STATE is known to hold them: by their
	// acknowledgements, which may come after STATE delivered the events.
	eventstest.Eventually(t, time.Second, func() bool { return b.stats.Transitions.Load()+b.stats.PoolTransitions.Load() >= 2 },
		"the survivor appended fewer events than the down transitions")

}

func TestADeciderStartingColdAppendsTheTransitionADeadOneLeftUndone(t *testing.T) {
	srv := eventstest.Start(t)
	c := eventstest.Config(t, shopYAML)
	a := start(t, srv.JS, c, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	a.stop()

	var ids []string
	for range 3 {
		ids = append(ids, p.send("shop", "west", "w1", false))
	}
	start(t, srv.JS, c, "decider/b")
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	down := stateOf(t, srv)[2]
	var tr events.Transition
	if err := down.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if down.Env.Cause != ids[2] || !reflect.DeepEqual(tr.Results, ids) || down.Env.Source != "decider/b" {
		t.Errorf("down caused by %q with results %v from %s; want %q, %v from decider/b", down.Env.Cause, tr.Results, down.Env.Source, ids[2], ids)
	}
}

func TestAnOverrideSetWhileNoDeciderRunsIsAppliedByTheNextOneToStart(t *testing.T) {
	srv := eventstest.Start(t)
	c := eventstest.Config(t, shopYAML)
	a := start(t, srv.JS, c, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	a.stop()

	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "alice@box", Reason: "deploy", Action: events.ActionDrain}
	if err := override.Set(context.Background(), srv.JS, o); err != nil {
		t.Fatal(err)
	}
	// The probers went silent longer ago than the next decider reads PROBES back: STATE's up
	// stands, and the override alone changes it.
	start(t, srv.JS, c, "decider/b", func(o *decider.Options) { o.Replay = time.Millisecond })
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:drained", "pool.shop.west:down")
}

// record is the recorded input of the property test: results of two endpoints from two regions
// whose health changes in phases, so that they go down and up several times.
func record() []events.ProbeResult {
	rng := rand.New(rand.NewPCG(7, 11))
	var out []events.ProbeResult
	for phase := range 8 {
		health := map[string]float64{"w1": []float64{1, 0.1, 0.9, 0, 1, 0.5, 0, 1}[phase], "e1": []float64{1, 1, 0, 0.2, 1, 1, 0.6, 1}[phase]}
		for tick := range 6 {
			for _, ep := range []string{"w1", "e1"} {
				for _, region := range []string{"eu", "us"} {
					pool := map[string]string{"w1": "west", "e1": "east"}[ep]
					out = append(out, events.ProbeResult{ID: fmt.Sprintf("%d-%d-%s-%s", phase, tick, ep, region),
						App: "shop", Pool: pool, Endpoint: ep, Region: region, OK: rng.Float64() < health[ep]})
				}
			}
		}
	}
	return out
}

// replay feeds the recorded results to n racing deciders on a fresh server and returns STATE as
// (subject, type, id, cause, data) lines.
func replay(t *testing.T, n int) []string {
	srv := eventstest.Start(t)
	c := eventstest.Config(t, shopYAML)
	var rs []*replica
	for i := range n {
		rs = append(rs, start(t, srv.JS, c, fmt.Sprintf("decider/%d", i)))
	}
	results := record()
	ctx := context.Background()
	for _, r := range results {
		r.At = time.Now()
		e, _ := events.New(events.TypeProbeCompleted, "prober/"+r.Region, r.At, r)
		if _, err := events.Publish(ctx, srv.JS, events.ProbeSubject(r.Region, r.App, r.Pool, r.Endpoint), e); err != nil {
			t.Fatal(err)
		}
	}
	st := srv.Stream(t, events.StreamState)
	eventstest.Eventually(t, 10*time.Second, func() bool {
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		for _, r := range rs {
			if r.stats.Messages.Load() != uint64(len(results)) || r.stats.StateSeq.Load() != info.State.LastSeq {
				return false
			}
		}
		return true
	}, "deciders did not fold every result and read every transition")
	var out []string
	for _, s := range stateOf(t, srv) {
		data, _ := json.Marshal(s.Env.Data)
		out = append(out, fmt.Sprintf("%s %s %s %s %s", s.Subject, s.Env.Type, s.Env.ID, s.Env.Cause, data))
	}
	return out
}

func TestTheSameRecordedResultsYieldIdenticalStateTwiceAndUnderRacingReplicas(t *testing.T) {
	first := replay(t, 1)
	if len(first) < 8 {
		t.Fatalf("the recording made only %d transitions; it should make several failovers", len(first))
	}
	if again := replay(t, 1); !reflect.DeepEqual(first, again) {
		t.Errorf("a second run differs:\n%s\nvs\n%s", first, again)
	}
	for _, n := range []int{2, 3} {
		if racing := replay(t, n); !reflect.DeepEqual(first, racing) {
			t.Errorf("%d racing replicas differ from one:\n%q\nvs\n%q", n, first, racing)
		}
	}
}

func TestARegionThatFallsSilentStopsVotingAfterStaleAfter(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "stale_after: 1h", "stale_after: 300ms", 1)
	doc = strings.Replace(doc, "fqdn: shop.demo.test", "fqdn: shop.demo.test\n    quorum: 1", 1)
	start(t, srv.JS, eventstest.Config(t, doc), "decider/a", func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	eu, us := &prober{t: t, js: srv.JS, region: "eu"}, &prober{t: t, js: srv.JS, region: "us"}
	for _, ok := range []bool{true, true, false, false, false} { // us: two passes, three failures, then silence
		eu.send("shop", "west", "w1", true)
		us.send("shop", "west", "w1", ok)
	}
	silent := stamp(t, srv, events.StreamProbes, us.lastSeq).Add(300 * time.Millisecond)
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		eu.send("shop", "west", "w1", true) // eu keeps voting
		got = history(t, srv)
		return reflect.DeepEqual(got, want)
	}, "STATE history is %q, want %q", &got, want)

	up := stateOf(t, srv)[4]
	var tr events.Transition
	if err := up.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if want := "us: no result for over stale_after 300ms; 1 of 1 voting regions see it up (quorum 1); not voting: us"; tr.Reason != want ||
		!up.Env.Time.Equal(silent) || up.Env.Cause != "us-5" {
		t.Errorf("stale transition at %s caused by %s: %q; want at %s (us's last result + 300ms), caused by us-5, %q",
			up.Env.Time, up.Env.Cause, tr.Reason, silent, want)
	}
	if appended := stamp(t, srv, events.StreamState, stateSeq(t, srv, 5)); appended.Before(silent) {
		t.Errorf("appended at %s, before us had been silent for 300ms (%s)", appended, silent)
	}
}

func TestHoldDownKeepsARecoveredEndpointOutUntilItHasStayedHealthy(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "fqdn: shop.demo.test", "fqdn: shop.demo.test\n    hold_down: 300ms", 1)
	start(t, srv.JS, eventstest.Config(t, doc), "decider/a", func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	eu := &prober{t: t, js: srv.JS, region: "eu"}
	for _, ok := range []bool{true, true, false, false, false, true, true} {
		eu.send("shop", "west", "w1", ok)
	}
	back := stamp(t, srv, events.StreamProbes, eu.lastSeq).Add(300 * time.Millisecond) // healthy from the second pass
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	up := stateOf(t, srv)[4]
	var tr events.Transition
	if err := up.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if !up.Env.Time.Equal(back) || up.Env.Cause != "eu-7" || tr.Thresholds.HoldDownMS != 300 ||
		tr.Reason != "healthy for the hold_down of 300ms; 1 of 1 voting regions see it up (quorum 0.5)" {
		t.Errorf("failback at %s caused by %s: %+v; want at %s, caused by eu-7 (the second pass), hold-down 300ms",
			up.Env.Time, up.Env.Cause, tr, back)
	}
	if appended := stamp(t, srv, events.StreamState, up.Seq); appended.Before(back) {
		t.Errorf("failback appended at %s, before the endpoint had been healthy for 300ms (%s)", appended, back)
	}
}

// stateSeq is the stream sequence of the n-th (1-based) STATE message.
func stateSeq(t testing.TB, srv *eventstest.Server, n int) uint64 {
	t.Helper()
	info, err := srv.Stream(t, events.StreamState).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.FirstSeq + uint64(n) - 1
}

func TestADecisionMadeWhileNATSIsAwayIsAppendedWhenItReturns(t *testing.T) {
	dir := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	run := func() *server.Server {
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready in 10s")
		}
		t.Cleanup(s.Shutdown)
		return s
	}
	srv := run()
	opts.Port = srv.Addr().(*net.TCPAddr).Port // come back on the same port
	_, js := eventstest.ConnectJS(t, srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the outage is the point here
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(shopYAML, "fqdn: shop.demo.test", "fqdn: shop.demo.test\n    hold_down: 300ms", 1)
	r := start(t, js, eventstest.Config(t, doc), "decider/a", func(o *decider.Options) { o.TickEvery = 20 * time.Millisecond })
	p := &prober{t: t, js: js, region: "eu"}
	for _, ok := range []bool{true, true, false, false, false} {
		p.send("shop", "west", "w1", ok)
	}
	state := func() []string {
		var out []string
		st, err := js.Stream(context.Background(), events.StreamState)
		if err != nil {
			return nil
		}
		info, err := st.Info(context.Background())
		if err != nil {
			return nil
		}
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			if m, err := st.GetMsg(context.Background(), seq); err == nil {
				out = append(out, strings.TrimPrefix(m.Subject, "detour.state.")+":"+m.Header.Get("Detour-Type"))
			}
		}
		return out
	}
	want := []string{"endpoint.shop.west.w1:detour.endpoint.up.v1", "pool.shop.west:detour.pool.up.v1",
		"endpoint.shop.west.w1:detour.endpoint.down.v1", "pool.shop.west:detour.pool.down.v1"}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool { got = state(); return reflect.DeepEqual(got, want) }, "STATE is %q, want %q", &got, want)

	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true) // healthy again: the hold-down runs out while NATS is away
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 7 }, "decider did not fold 7 results")
	srv.Shutdown()
	eventstest.Eventually(t, 10*time.Second, func() bool { return r.stats.Failed.Load() > 0 }, "the decider never tried to append the failback")
	run()
	want = append(want, "endpoint.shop.west.w1:detour.endpoint.up.v1", "pool.shop.west:detour.pool.up.v1")
	eventstest.Eventually(t, 10*time.Second, func() bool { got = state(); return reflect.DeepEqual(got, want) }, "STATE is %q, want %q", &got, want)
}

func TestAnOverrideFromAClockBehindTheProbersStillWins(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionDrain, Reason: "deploy", By: "alice@laptop"}
	e, _ := events.New(events.TypeOverrideSet, "override/alice@laptop", time.Now().Add(-time.Minute), o) // a minute slow
	if _, err := events.Publish(context.Background(), srv.JS, events.OverrideSubject("shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:drained", "pool.shop.west:down")
}

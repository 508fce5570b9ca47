package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

const edgesDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080", secondary: edge-east}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.22
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: shop, listen: "127.0.0.22:8080", secondary: edge-west}]
`

func startController(t *testing.T, ns *eventstest.Server, cfg *config.Config, name string) {
	t.Helper()
	eventstest.Run(t, "controller "+name, func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Name: name, Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
}

// beat publishes edge heartbeats every interval until stop is closed or the test ends.
func beat(t *testing.T, ns *eventstest.Server, edge string, interval time.Duration, stop <-chan struct{}) {
	t.Helper()
	beating(t, ns, edge, interval, stop, new(atomic.Bool))
}

// beating publishes edge heartbeats every interval while paused is not set, until stop is
// closed (never, when nil) or the test ends.
func beating(t *testing.T, ns *eventstest.Server, edge string, interval time.Duration, stop <-chan struct{}, paused *atomic.Bool) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			if !paused.Load() {
				e, err := events.New(events.TypeEdgeHeartbeat, "test", time.Now(), events.Heartbeat{Edge: edge, Seq: seq})
				if err != nil {
					t.Error(err)
					return
				}
				_ = ns.Conn.Publish(events.HeartbeatSubject(edge), e.Encode())
			}
			select {
			case <-stop:
				return
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
}

// history returns the types of every event stored on subject, oldest first.
func history(t *testing.T, ns *eventstest.Server, stream, subject string) []events.Envelope {
	t.Helper()
	ctx := context.Background()
	st := ns.Stream(t, stream)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Envelope
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Subject != subject {
			continue
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func types(es []events.Envelope) string {
	s := ""
	for _, e := range es {
		s += map[string]string{events.TypeEdgeUp: "U", events.TypeEdgeDown: "D"}[e.Type]
	}
	return s
}

func TestTwoControllersRecordAnEdgeGoingDownAndComingBackOnce(t *testing.T) {
	ns := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	stopEast := make(chan struct{})
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	beat(t, ns, "edge-east", 100*time.Millisecond, stopEast)
	startController(t, ns, cfg, "controller-1")
	startController(t, ns, cfg, "controller-2")

	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "U" }, "edge-east up")

	close(stopEast)
	stopped := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "UD" }, "edge-east down")
	// fall × interval + tolerance, plus the controllers' tick and the append.
	if took, limit := time.Since(stopped), 3*100*time.Millisecond+Tolerance(100*time.Millisecond)+500*time.Millisecond; took > limit {
		t.Errorf("edge-east marked down %s after its last heartbeat, want within %s", took, limit)
	}
	down := history(t, ns, events.StreamState, east)[1]
	var tr events.Transition
	if err := down.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	// Either replica may record it. One that heard edge-east names the last heartbeat it heard;
	// one that started too late to hear any (the test waits for the first replica only) says so.
	heard := tr.Reason == "3 missed heartbeats (interval 100ms)" && len(tr.Results) == 1
	neverHeard := tr.Reason == "no heartbeat within 3 intervals of 100ms" && len(tr.Results) == 0
	if tr.Edge != "edge-east" || tr.From != events.StatusUp || tr.To != events.StatusDown || !(heard || neverHeard) {
		t.Errorf("down transition = %+v", tr)
	}

	beat(t, ns, "edge-east", 100*time.Millisecond, make(chan struct{}))
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "UDU" }, "edge-east up again")
	if got := types(history(t, ns, events.StreamState, west)); got != "U" {
		t.Errorf("edge-west history %q, want a single up: it never stopped", got)
	}
}

func TestRouteTablesFollowStateAndAreNotRepeated(t *testing.T) {
	ns := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	startController(t, ns, cfg, "controller-1")
	westRoutes := events.AppRouteSubject("edge-west", "shop")
	table := func() (events.RouteTable, int) {
		h := history(t, ns, events.StreamRoutes, westRoutes)
		if len(h) == 0 {
			return events.RouteTable{}, 0
		}
		var r events.EdgeRoute
		if err := h[len(h)-1].Payload(&r); err != nil {
			t.Fatal(err)
		}
		return r.Table(), len(h)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { _, n := table(); return n == 1 }, "a first table for edge-west")
	if rt, _ := table(); !rt.Apps[0].Available || rt.Apps[0].Secondary.Edge != "edge-east" {
		t.Fatalf("first table = %+v, want shop available with secondary edge-east", rt)
	}

	appendState := func(subject, typ string) {
		e, err := events.New(typ, "test", time.Now(), events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), ns.JS, subject, e); err != nil {
			t.Fatal(err)
		}
	}
	appendState(events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { rt, n := table(); return n == 2 && !rt.Apps[0].Available }, "a table with the west pool down")

	// A change that does not touch edge-west's routes stores no new table for it.
	appendState(events.EndpointStateSubject("shop", "east", "e1"), events.TypeEndpointDown)
	eastRoutes := events.AppRouteSubject("edge-east", "shop")
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, eastRoutes)) == 2 }, "edge-east's table to change")
	if _, n := table(); n != 2 {
		t.Errorf("edge-west has %d tables, want 2: the east pool is not in its routes", n)
	}
	appendState(events.EdgeStateSubject("edge-east"), events.TypeEdgeDown)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		rt, n := table()
		return n == 3 && rt.Apps[0].Secondary.Status == events.StatusDown
	}, "edge-west's table to show its secondary down")
}

func TestRunRefusesIncompleteOptions(t *testing.T) {
	ns := eventstest.Start(t)
	cfg, _ := config.Parse("test.yaml", []byte(edgesDoc))
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Config: cfg, Name: "c"}, "controller options: JS is required"},
		{Options{JS: ns.JS, Name: "c"}, "controller options: Config is required"},
		{Options{JS: ns.JS, Config: cfg}, "controller options: Name is required"},
	} {
		if err := Run(context.Background(), tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("err = %v, want %s", err, tt.want)
		}
	}
}

// check publishes results of the probers' checks of edge's listener for app shop from regions
// every interval, passing when ok, until the test ends: each alone on its own subject, or, with
// batched, in a batch of its region's prober.
func check(t *testing.T, ns *eventstest.Server, edge string, ok, batched bool, interval time.Duration, regions ...string) {
	t.Helper()
	passing := new(atomic.Bool)
	passing.Store(ok)
	checkApp(t, ns, "shop", edge, passing, batched, interval, regions...)
}

// checkApp publishes results of the probers' checks of edge's listener for app from regions
// every interval, passing while ok is set, until the test ends, as check does.
func checkApp(t *testing.T, ns *eventstest.Server, app, edge string, ok *atomic.Bool, batched bool, interval time.Duration, regions ...string) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			for _, region := range regions {
				r := events.ProbeResult{At: time.Now().UTC(), App: app, Pool: events.EdgeProbePool, Endpoint: edge, Region: region, OK: ok.Load()}
				typ, subject, payload := events.TypeProbeCompleted, events.ProbeSubject(region, app, events.EdgeProbePool, edge), any(r)
				if batched {
					typ, subject = events.TypeProbeBatchCompleted, events.EdgeProbeBatchSubject(region, "p1")
					payload = events.ProbeBatch{Region: region, Prober: "p1", Results: []events.ProbeResult{r}}
				}
				e, err := events.New(typ, "test", time.Now(), payload)
				if err != nil {
					t.Error(err)
					return
				}
				_ = ns.Conn.Publish(subject, e.Encode())
			}
			select {
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
}

func TestAWedgedEdgeGoesDownAndAnEdgeCutFromNATSStaysUp(t *testing.T) {
	ns := eventstest.Start(t)
	doc := strings.Replace(edgesDoc, "    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 1s}\n", 1)
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// edge-west's heartbeats flow but its listener fails every check (results batched by the
	// probers); edge-east sends no heartbeat at all but its listener passes every check (results
	// alone, as a prober of an earlier version sends them).
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	check(t, ns, "edge-west", false, true, 100*time.Millisecond, "us-west", "us-east")
	check(t, ns, "edge-east", true, false, 100*time.Millisecond, "us-west", "us-east")
	startController(t, ns, cfg, "controller-1")

	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.HasSuffix(types(history(t, ns, events.StreamState, west)), "D") }, "edge-west down")
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "U" }, "edge-east up")
	var tr events.Transition
	h := history(t, ns, events.StreamState, west)
	if err := h[len(h)-1].Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.Reason != "listener checks: 1 of 1 listeners failing by their apps' quorum of regions (heartbeats arrive)" {
		t.Errorf("edge-west went down for %q, want the listener checks named", tr.Reason)
	}
	// Well past fall × interval without a heartbeat, edge-east is still up: its checks pass.
	deadline := time.Now().Add(3*100*time.Millisecond + time.Second)
	for time.Now().Before(deadline) {
		if got := types(history(t, ns, events.StreamState, east)); got != "U" {
			t.Fatalf("edge-east history %q, want a single up: its listeners answer", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEdgeChecksFromUnconfiguredRegionsDoNotTakeALiveEdgeDown(t *testing.T) {
	ns := eventstest.Start(t)
	doc := strings.Replace(edgesDoc, "    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 1s}\n", 1)
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// edge-west's heartbeats flow; only invented regions say its listener fails.
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	check(t, ns, "edge-west", false, true, 100*time.Millisecond, "mars", "venus")
	startController(t, ns, cfg, "controller-1")
	west := events.EdgeStateSubject("edge-west")
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, west)) == "U" }, "edge-west up")
	deadline := time.Now().Add(3*100*time.Millisecond + time.Second)
	for time.Now().Before(deadline) {
		if got := types(history(t, ns, events.StreamState, west)); got != "U" {
			t.Fatalf("edge-west history %q, want a single up: no configured region checks it", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAnEdgeSilentAgainAfterItsChecksBroughtItBackIsRecordedDownAgain: an edge's down rested on
// its last heartbeat, and its id derived from that heartbeat's alone. An edge recorded down for
// its silence, up again for its passing listener checks, and silent once those went stale, with
// no heartbeat in between, had its second down sent under the first one's id: STATE took it for
// a duplicate for two minutes, and the edge stayed recorded up, and in DNS, all that time.
func TestAnEdgeSilentAgainAfterItsChecksBroughtItBackIsRecordedDownAgain(t *testing.T) {
	ns := eventstest.Start(t)
	doc := strings.Replace(edgesDoc, "    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 500ms}\n", 1)
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	paused := new(atomic.Bool)
	beating(t, ns, "edge-west", 100*time.Millisecond, nil, paused)
	beat(t, ns, "edge-east", 100*time.Millisecond, nil)
	startController(t, ns, cfg, "controller-1")
	west := events.EdgeStateSubject("edge-west")
	got := func() string { return types(history(t, ns, events.StreamState, west)) }
	eventstest.Eventually(t, 5*time.Second, func() bool { return got() == "U" }, "edge-west up")

	paused.Store(true) // its heartbeats stop: down
	eventstest.Eventually(t, 5*time.Second, func() bool { return got() == "UD" }, "edge-west down for its silence")

	// A prober finds its listener answering: up, its heartbeats still silent.
	for range 2 {
		r := events.ProbeResult{At: time.Now().UTC(), App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-west", Region: "us-west", OK: true}
		e, err := events.New(events.TypeProbeCompleted, "test", time.Now(), r)
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Conn.Publish(events.ProbeSubject("us-west", "shop", events.EdgeProbePool, "edge-west"), e.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return got() == "UDU" }, "edge-west up for its listener checks")

	// The checks stop and go stale: its silence decides again, well within the duplicate window.
	var h string
	eventstest.Eventually(t, 5*time.Second, func() bool { h = got(); return h == "UDUD" },
		"edge-west down again once its checks went stale, history %q", &h)
}

func TestMalformedEdgeChecksAreLoggedOncePerPeriodNotOnceEach(t *testing.T) {
	// Before, each was a warning of its own: a prober sending garbage on its edge-check subject
	// wrote the controller's log as fast as it published.
	ns := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	logs := &eventstest.Logs{}
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(logs).Level(zerolog.DebugLevel)})
	})
	subject := events.EdgeProbeBatchSubject("us-west", "p1")
	// The controller subscribes as it starts: wait until a valid check of an edge it does not
	// watch is heard, on the subject the garbage comes by.
	unknown, err := events.New(events.TypeProbeBatchCompleted, "test", time.Now(), events.ProbeBatch{Region: "us-west", Prober: "p1",
		Results: []events.ProbeResult{{At: time.Now().UTC(), App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-nowhere", Region: "us-west", OK: true}}})
	if err != nil {
		t.Fatal(err)
	}
	const heard = "check of an edge listener that is not configured"
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_ = ns.Conn.Publish(subject, unknown.Encode())
		return logs.Count(heard) > 0
	}, "the controller hears edge checks")
	before := logs.Count(heard)
	for i := range 200 {
		if err := ns.Conn.Publish(subject, []byte(fmt.Sprintf(`{"garbage":%d`, i))); err != nil {
			t.Fatal(err)
		}
	}
	// Published after the garbage on the same subject: heard after it.
	if err := ns.Conn.Publish(subject, unknown.Encode()); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(heard) > before }, "the check after the garbage is heard")
	if n := logs.Count("malformed messages skipped"); n != 1 {
		t.Errorf("200 malformed edge checks logged %d warnings, want 1 (the first, counting the rest later)", n)
	}
}

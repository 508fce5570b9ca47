package controller

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// busyLoop is a controller run on a clock and ticks of the test's, whose loop the test can hold
// busy: a configuration sent while held has the loop wait, logging it applied, until released.
// The test also tells it that it runs (Options.Awake) as its clock advances, or not, when the
// whole controller stalls.
type busyLoop struct {
	t        *testing.T
	ns       *eventstest.Server
	cfg      *config.Config
	clock    atomic.Int64 // unix nanoseconds
	ticks    chan time.Time
	awake    chan time.Time
	configs  chan *config.Config
	held     chan struct{}
	released chan struct{}
	logged   chan string // each log line, for waitLog; full lines are dropped
	metrics  *metrics.Metrics
}

func startBusyLoop(t *testing.T, doc string) *busyLoop {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b := &busyLoop{t: t, ns: eventstest.Start(t), cfg: cfg, ticks: make(chan time.Time), awake: make(chan time.Time), configs: make(chan *config.Config),
		held: make(chan struct{}), released: make(chan struct{}), logged: make(chan string, 1024), metrics: metrics.New()}
	b.clock.Store(time.Unix(1700000000, 0).UnixNano())
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: b.ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(b), Now: b.now,
			Ticks: b.ticks, Awake: b.awake, Configs: b.configs, Metrics: b.metrics})
	})
	return b
}

func (b *busyLoop) now() time.Time { return time.Unix(0, b.clock.Load()) }

// advance moves the clock on by d while the controller runs: however busy its loop, it is
// awake every 10ms of it.
func (b *busyLoop) advance(d time.Duration) {
	for ; d > 0; d -= 10 * time.Millisecond {
		b.clock.Add(int64(min(d, 10*time.Millisecond)))
		b.awake <- b.now()
	}
	b.awake <- b.now() // taken once the last one is noted
}

// stall moves the clock on by d while the controller does not run at all: neither its loop nor
// the goroutine telling that it is awake.
func (b *busyLoop) stall(d time.Duration) { b.clock.Add(int64(d)) }

// Write holds the loop on the line saying a configuration was applied until release.
func (b *busyLoop) Write(p []byte) (int, error) {
	select {
	case b.logged <- string(p):
	default:
	}
	if strings.Contains(string(p), "configuration applied") {
		b.held <- struct{}{}
		<-b.released
	}
	return len(p), nil
}

var _ io.Writer = (*busyLoop)(nil)

// hold returns once the loop is busy.
func (b *busyLoop) hold() {
	b.configs <- b.cfg
	<-b.held
}

func (b *busyLoop) release() { b.released <- struct{}{} }

// tick has the loop decide edge liveness, and returns once it has (the next tick is taken only
// after).
func (b *busyLoop) tick() {
	b.ticks <- b.now()
	b.ticks <- b.now()
}

// waitLog returns once a line holding want is logged.
func (b *busyLoop) waitLog(want string) {
	b.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-b.logged:
			if strings.Contains(l, want) {
				return
			}
		case <-deadline:
			b.t.Fatalf("no log line holding %q within 5s", want)
		}
	}
}

func (b *busyLoop) publish(subject, typ string, payload any) {
	b.t.Helper()
	e, err := events.New(typ, "test", time.Now(), payload)
	if err == nil {
		err = b.ns.Conn.Publish(subject, e.Encode())
	}
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *busyLoop) heartbeat(edge string) {
	b.publish(events.HeartbeatSubject(edge), events.TypeEdgeHeartbeat, events.Heartbeat{Edge: edge, Seq: 1})
}

// failChecks publishes fall failed checks of edge's listener from each region, in batches.
func (b *busyLoop) failChecks(edge string, fall int, regions ...string) {
	for range fall {
		for _, region := range regions {
			r := events.ProbeResult{At: time.Now().UTC(), App: "shop", Pool: events.EdgeProbePool, Endpoint: edge, Region: region}
			b.publish(events.EdgeProbeBatchSubject(region, "p1"), events.TypeProbeBatchCompleted,
				events.ProbeBatch{Region: region, Prober: "p1", Results: []events.ProbeResult{r}})
		}
	}
}

// checksRecorded is how many edge-listener results the controller recorded.
func (b *busyLoop) checksRecorded() float64 {
	fams, err := b.metrics.Registry.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	n := 0.0
	for _, f := range fams {
		if f.GetName() == "detour_edge_checks_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// edgeEvents is how many transitions STATE holds for each edge.
func (b *busyLoop) edgeEvents() map[string]uint64 {
	b.t.Helper()
	info, err := b.ns.Stream(b.t, events.StreamState).Info(context.Background(), jetstream.WithSubjectFilter("detour.state.edge.>"))
	if err != nil {
		b.t.Fatal(err)
	}
	return info.State.Subjects
}

func TestEdgeChecksThatWaitedOutABusyLoopAreWeighedByWhenTheyArrived(t *testing.T) {
	doc := strings.Replace(edgesDoc, "    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 1s}\n", 1)
	// Heartbeats every 10s: their silence decides nothing within this test's clock.
	b := startBusyLoop(t, strings.ReplaceAll(doc, "heartbeat: {interval: 100ms, fall: 3}", "heartbeat: {interval: 10s, fall: 3}"))
	west := events.EdgeStateSubject("edge-west")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		b.heartbeat("edge-west")
		b.tick()
		return types(history(t, b.ns, events.StreamState, west)) == "U"
	}, "edge-west up on its heartbeat")

	// While the loop is busy, both regions see edge-west's listener fail; by the time the loop
	// is free again those results are older than stale_after.
	b.hold()
	b.failChecks("edge-west", 3, "us-west", "us-east")
	eventstest.Eventually(t, 5*time.Second, func() bool { return b.checksRecorded() == 6 }, "6 edge checks recorded while the loop is busy")
	b.advance(1500 * time.Millisecond)
	b.release()
	b.tick()
	if got := types(history(t, b.ns, events.StreamState, west)); got != "U" {
		t.Fatalf("edge-west history %q after stale results, want still up: the results were 1.5s old, stale after 1s", got)
	}

	// Fresh failures, even if the loop was busy when they came, take it down.
	b.hold()
	b.failChecks("edge-west", 3, "us-west", "us-east")
	eventstest.Eventually(t, 5*time.Second, func() bool { return b.checksRecorded() == 12 }, "12 edge checks recorded")
	// A transition is appended beside the loop, and its outcome logged by the loop: a down
	// decided on the stale results would be told of by now.
	var early string
	for drained := false; !drained; {
		select {
		case l := <-b.logged:
			if strings.Contains(l, "edge liveness changed") && strings.Contains(l, `"to":"down"`) {
				early = l
			}
		default:
			drained = true
		}
	}
	b.release()
	if early != "" {
		t.Fatalf("edge-west was recorded down on stale results: %s", early)
	}
	b.tick()
	b.waitLog("edge liveness changed") // the down is stored
	h := history(t, b.ns, events.StreamState, west)
	if got := types(h); got != "UD" {
		t.Fatalf("edge-west history %q after fresh failures from both regions, want UD", got)
	}
	var tr events.Transition
	if err := h[1].Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.Reason != "listener checks: 1 of 1 listeners failing by their apps' quorum of regions (heartbeats arrive)" {
		t.Errorf("edge-west went down for %q, want the listener checks named", tr.Reason)
	}
}

// manyEdgesDoc is n edges fronting one app, heartbeating every second.
func manyEdgesDoc(n int) string {
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n  - {name: shop, fqdn: shop.demo.test, pools: [{name: west, region: us-west, endpoints: [{name: w, address: \"10.1.0.1:80\"}]}]}\nedges:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: edge%d, region: us-west, hostname: edge%d.demo.test, address: 10.9.%d.%d, heartbeat: {interval: 1s, fall: 3}, apps: [{app: shop, listen: \"127.0.%d.%d:8080\"}]}\n",
			i, i, i/250, 1+i%250, i/250, 1+i%250)
	}
	return b.String()
}

func TestHeartbeatsOfHundredsOfEdgesAreNeitherLostNorAgedByABusyLoop(t *testing.T) {
	const edges, beats = 200, 6 // 1,200 heartbeats while the loop is busy
	b := startBusyLoop(t, manyEdgesDoc(edges))
	// An unconfigured edge's heartbeat, sent after the others, is logged once they are recorded.
	sentinel := func() {
		b.heartbeat("edge-unknown")
		b.waitLog("heartbeat of an edge that is not configured")
	}

	b.hold()
	for i := range edges {
		for range beats {
			b.heartbeat(fmt.Sprintf("edge%d", i))
		}
	}
	sentinel()
	b.release()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		b.tick()
		return len(b.edgeEvents()) == edges
	}, "every edge up")
	for subject, n := range b.edgeEvents() {
		if n != 1 {
			t.Fatalf("%s holds %d transitions, want one up", subject, n)
		}
	}

	// Heartbeats that arrived while the loop was busy, 4s before it is free again, are older
	// than fall × interval: every edge is down, not kept up by them.
	b.hold()
	for i := range edges {
		b.heartbeat(fmt.Sprintf("edge%d", i))
	}
	sentinel()
	b.advance(4 * time.Second)
	b.release()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		b.tick()
		for _, n := range b.edgeEvents() {
			if n != 2 {
				return false
			}
		}
		return true
	}, "every edge down")
	if got := types(history(t, b.ns, events.StreamState, events.EdgeStateSubject("edge7"))); got != "UD" {
		t.Errorf("edge7 history %q, want UD", got)
	}
}

package prober

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// testConfig parses a configuration whose apps are given as YAML list items.
func testConfig(t *testing.T, apps string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte("zones: [{name: demo.test}]\napps:\n"+apps))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return c
}

// startWorker runs a prober until the test ends and returns a function that stops it.
func startWorker(t *testing.T, o Options) (stop func()) {
	t.Helper()
	return eventstest.Run(t, "prober "+o.Name, func(ctx context.Context) error { return Run(ctx, o) })
}

// results reads every probe result stored in PROBES so far, unpacking batches.
func results(t *testing.T, js jetstream.JetStream) []events.ProbeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []events.ProbeResult
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode message %d on %s: %v", seq, m.Subject, err)
		}
		switch e.Type {
		case events.TypeProbeCompleted:
			var r events.ProbeResult
			if err := e.Payload(&r); err != nil {
				t.Fatalf("payload of %d: %v", seq, err)
			}
			if want := events.ProbeSubject(r.Region, r.App, r.Pool, r.Endpoint); m.Subject != want {
				t.Errorf("result on %s, want %s", m.Subject, want)
			}
			if r.ID != e.ID {
				t.Errorf("result id %s differs from its envelope's %s", r.ID, e.ID)
			}
			out = append(out, r)
		case events.TypeProbeBatchCompleted:
			var b events.ProbeBatch
			if err := e.Payload(&b); err != nil {
				t.Fatalf("payload of %d: %v", seq, err)
			}
			out = append(out, b.Results...)
		default:
			t.Fatalf("message %d on %s has type %s", seq, m.Subject, e.Type)
		}
	}
	return out
}

func TestWorkerPublishesEveryResultOnTheEndpointsSubject(t *testing.T) {
	srv := eventstest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(up.Close)
	deadAddr := eventstest.ClosedPort(t)
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, path: /healthz, interval: 100ms, timeout: 80ms}
    pools:
      - name: west
        endpoints: [{address: %q, name: live}]
      - name: east
        endpoints: [{address: %q, name: dead}]
`, up.Listener.Addr().String(), deadAddr))
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "us-west", Name: "p1",
		Log: zerolog.New(zerolog.NewTestWriter(t)), Heartbeat: 50 * time.Millisecond})

	var got []events.ProbeResult
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = results(t, srv.JS)
		var live, dead int
		for _, r := range got {
			if r.Endpoint == "live" {
				live++
			} else {
				dead++
			}
		}
		return live >= 3 && dead >= 3
	}, "three results of each endpoint")
	for _, r := range got {
		if r.Region != "us-west" || r.Prober != "p1" || r.App != "shop" || r.Check != "http" || r.At.IsZero() {
			t.Errorf("result lacks its origin: %+v", r)
		}
		switch r.Endpoint {
		case "live":
			if !r.OK || r.HTTPStatus != 200 || r.Pool != "west" || r.Address != up.Listener.Addr().String() {
				t.Errorf("live endpoint's result: %+v", r)
			}
		case "dead":
			if r.OK || r.ErrorClass != ClassRefused || !strings.Contains(r.Error, "refused") || r.Pool != "east" {
				t.Errorf("dead endpoint's result: %+v", r)
			}
		}
	}
}

func TestWithABatchWindowResultsArriveTogetherAndEachStillNamesItsEndpoint(t *testing.T) {
	srv := eventstest.Start(t)
	addr := acceptAndDrop(t, "127.0.0.1:0")
	var eps strings.Builder
	for i := range 50 {
		fmt.Fprintf(&eps, "{name: e%02d, address: %q}, ", i, addr.String())
	}
	// Fifty checks spread over a 200ms interval: a 20ms window gathers several at a time.
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 200ms, jitter: 1ns, timeout: 100ms}
    pools:
      - name: west
        endpoints: [`+eps.String()+`]
`)
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "eu", Name: "p1", BatchWindow: 20 * time.Millisecond,
		Log: zerolog.New(zerolog.NewTestWriter(t)), Heartbeat: 50 * time.Millisecond})

	eventstest.Eventually(t, 5*time.Second, func() bool { return len(results(t, srv.JS)) >= 150 }, "150 results")
	st := srv.Stream(t, events.StreamProbes)
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs*3 > uint64(len(results(t, srv.JS))) {
		t.Errorf("%d messages carry %d results: not batched", info.State.Msgs, len(results(t, srv.JS)))
	}
	m, err := st.GetLastMsgForSubject(context.Background(), events.ProbeBatchSubject("eu", "p1"))
	if err != nil {
		t.Fatalf("no batch on %s: %v", events.ProbeBatchSubject("eu", "p1"), err)
	}
	e, err := events.Decode(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	var b events.ProbeBatch
	if err := e.Payload(&b); err != nil {
		t.Fatal(err)
	}
	if b.Region != "eu" || b.Prober != "p1" || len(b.Results) < 2 {
		t.Fatalf("batch %+v", b)
	}
	for i, r := range b.Results {
		if r.ID != fmt.Sprintf("%s/%d", e.ID, i) || !r.OK || r.Endpoint == "" || r.Region != "eu" {
			t.Errorf("result %d of batch %s: %+v", i, e.ID, r)
		}
	}
}

func TestANewConfigurationReplacesTheChecksAtOnce(t *testing.T) {
	srv := eventstest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	app := func(endpoint string) string {
		return fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 100ms}
    pools:
      - name: west
        endpoints: [{name: %s, address: %q}]
`, endpoint, up.Listener.Addr().String())
	}
	configs := make(chan *config.Config)
	startWorker(t, Options{JS: srv.JS, Config: testConfig(t, app("old")), Configs: configs, Region: "eu", Name: "p1",
		Log: zerolog.New(zerolog.NewTestWriter(t)), Heartbeat: 50 * time.Millisecond})
	count := func(endpoint string) int {
		n := 0
		for _, r := range results(t, srv.JS) {
			if r.Endpoint == endpoint {
				n++
			}
		}
		return n
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return count("old") >= 2 }, "results for the old endpoint")
	configs <- testConfig(t, app("new"))
	eventstest.Eventually(t, 5*time.Second, func() bool { return count("new") >= 3 }, "results for the new endpoint")
	// Once the new endpoint has three results, the old one (same interval) gets no more.
	old := count("old")
	eventstest.Eventually(t, 5*time.Second, func() bool { return count("new") >= 6 }, "more results for the new endpoint")
	if count("old") != old {
		t.Errorf("the old endpoint is still checked: %d results, then %d", old, count("old"))
	}
}

func TestInvalidOptionsAreRefusedNamingEachField(t *testing.T) {
	err := Run(context.Background(), Options{Region: "us west", MemberTTL: time.Millisecond, Heartbeat: time.Second})
	if err == nil {
		t.Fatal("Run accepted invalid options")
	}
	for _, want := range []string{"js: missing", "config: missing", `region: "us west" may hold only`, "name: must not be empty",
		"member_ttl: 1ms is shorter than two heartbeats (2 × 1s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestAProberOfAnUnconfiguredRegionIsRefused(t *testing.T) {
	cfg := &config.Config{Regions: []string{"us-west", "us-east"}}
	err := Run(context.Background(), Options{Config: cfg, Region: "mars", Name: "p1"})
	if want := `region: "mars" is not among the configured regions [us-west us-east]`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", err, want)
	}
}

func TestTwoProbersUnderOneNameAreReported(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools:
      - name: west
        endpoints: [{address: "127.0.0.1:1"}]
`)
	var logs eventstest.Logs
	log := zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t)))
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "eu", Name: "p1", Log: log, Heartbeat: 50 * time.Millisecond})
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "eu", Name: "p1", Log: log, Heartbeat: 50 * time.Millisecond})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "another prober runs under this name in this region")
	}, "a warning about the duplicate name")
}

// The probers' bucket refuses a record for a new key when it is full (events.ProbersStream): a
// worker kept out says so and why, and joins as soon as there is room (the flood's records
// expire, or the operator raises the bound), where it stopped with an error, to be restarted
// into the same refusal.
func TestAProberKeptOutOfAFullMembershipBucketSaysSoAndJoinsWhenThereIsRoom(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	bound := func(records int64) {
		t.Helper()
		c := srv.Stream(t, events.StreamProbers).CachedInfo().Config
		c.MaxMsgs = records
		if _, err := srv.JS.UpdateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	bound(1)
	if _, err := srv.JS.Publish(ctx, "$KV."+events.BucketProbers+".us-west.flood", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools:
      - name: west
        endpoints: [{address: "127.0.0.1:1"}]
`)
	var logs eventstest.Logs
	log := zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t)))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, Options{JS: srv.JS, Config: cfg, Region: "us-west", Name: "p1", Log: log, Heartbeat: 50 * time.Millisecond})
	}()
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "membership bucket full") || len(done) > 0
	}, "no word of the full bucket")
	select {
	case err := <-done:
		t.Fatalf("the prober kept out of the full bucket stopped: %v", err)
	default:
	}
	bound(2)
	kv, err := srv.JS.KeyValue(ctx, events.BucketProbers)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, err := kv.Get(ctx, "us-west.p1")
		return err == nil && strings.Contains(logs.String(), "prober started")
	}, "the prober did not join once the bucket had room")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the prober stopped with %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the prober did not stop within 10s")
	}
}

// TestAnEndpointThatNeverAnswersIsCheckedInEveryWindow: a check whose timeout is its interval
// (the default for intervals up to 2 s) ends as its next window comes, against an endpoint
// that never answers; that window's check still runs, and a result names every window.
func TestAnEndpointThatNeverAnswersIsCheckedInEveryWindow(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 200ms}
    pools:
      - name: west
        endpoints: [{address: %q, name: hung}]
`, eventstest.Blackhole(t)))
	if got := cfg.Apps[0].Check.Timeout.D(); got != 200*time.Millisecond {
		t.Fatalf("the check's timeout is %s, want its interval (the default)", got)
	}
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "us-west", Name: "p1",
		Log: zerolog.New(zerolog.NewTestWriter(t)), BatchWindow: -1})

	const span = 15 // windows
	windows := map[int64]bool{}
	var first, last int64
	eventstest.Eventually(t, 20*time.Second, func() bool {
		clear(windows)
		first, last = 0, 0
		for _, r := range results(t, srv.JS) {
			if r.OK || r.ErrorClass != ClassTimeout {
				t.Fatalf("result %+v, want a timeout", r)
			}
			windows[r.Window] = true
			if first == 0 || r.Window < first {
				first = r.Window
			}
			last = max(last, r.Window)
		}
		return last-first >= span
	}, "results over %d windows", span)
	var missing []int64
	for n := first; n <= last; n++ {
		if !windows[n] {
			missing = append(missing, n-first)
		}
	}
	// A window or two may be skipped on a loaded machine; one in two is the bug.
	if len(missing) > 2 {
		t.Errorf("of %d windows, %d have no result (windows %v after the first)", last-first+1, len(missing), missing)
	}
}

// TestAnEndpointThatNeverAnswersIsCheckedOnScheduleWindowAfterWindow: against an endpoint that
// never answers, a check whose timeout is its interval ends as its next window comes, and that
// window's check runs then; the check still ends when its own window's timeout ends, so its
// results keep to the schedule. Each run given its whole timeout from when it began ended a
// moment later than the one before (a millisecond or so a window), until its results came a
// whole interval late and a window in two was skipped; the prober said it was falling behind
// its schedule and wanted more workers or cpu, while one endpoint was hung.
func TestAnEndpointThatNeverAnswersIsCheckedOnScheduleWindowAfterWindow(t *testing.T) {
	srv := eventstest.Start(t)
	const interval = 50 * time.Millisecond
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 50ms}
    pools:
      - name: west
        endpoints: [{address: %q, name: hung}]
`, eventstest.Blackhole(t)))
	startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "us-west", Name: "p1",
		Log: zerolog.New(zerolog.NewTestWriter(t)), BatchWindow: -1})

	const span = 150 // windows
	var rs []events.ProbeResult
	eventstest.Eventually(t, 60*time.Second, func() bool {
		rs = results(t, srv.JS)
		return len(rs) > 0 && rs[len(rs)-1].Window-rs[0].Window >= span
	}, "results over %d windows", span)
	late, missing := 0, 0
	for i, r := range rs {
		// The check of window n ends at its instant and timeout (the interval), plus the
		// moment its result takes to be made.
		if over := r.At.Sub(SlotTime("shop/west/hung", interval, 0, r.Window).Add(interval)); over > interval/2 {
			late++
		}
		if i > 0 {
			missing += int(r.Window - rs[i-1].Window - 1)
		}
	}
	// Some may come late, or be skipped, on a loaded machine (a CPU taken for tens of
	// milliseconds is a window here); every other window skipped, or checks drifting later
	// window after window, is the bug.
	if late > len(rs)/4 || missing > span/10 {
		t.Errorf("of %d results, %d ended over %s after their window's timeout, and %d windows have none", len(rs), late, interval/2, missing)
	}
}

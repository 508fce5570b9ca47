package prober

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// checkLog holds every result the workers published, as a subscriber of their subjects sees it.
// Each result names its check's window (ProbeResult.Window), so the log says which worker ran
// which window's check whatever the delays of a loaded machine.
type checkLog struct {
	t        *testing.T
	nc       *nats.Conn
	msgs     chan *nats.Msg
	interval time.Duration
	// runs maps a check key and a window to the workers that ran it, one entry per run.
	runs map[string]map[int64][]string
	// stalls excuses the windows in which the workers could not run.
	stalls *stalls
}

func newCheckLog(t *testing.T, nc *nats.Conn, region string, interval time.Duration) *checkLog {
	l := &checkLog{t: t, nc: nc, msgs: make(chan *nats.Msg, 1<<16), interval: interval, runs: map[string]map[int64][]string{},
		stalls: watchStalls(t, interval/2)}
	sub, err := nc.ChanSubscribe("detour.probe."+region+".>", l.msgs)
	if err != nil {
		t.Fatalf("subscribe to results: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush subscription: %v", err)
	}
	return l
}

// read takes in the results received so far.
func (l *checkLog) read() {
	l.t.Helper()
	for {
		select {
		case m := <-l.msgs:
			e, err := events.Decode(m.Data)
			if err != nil {
				l.t.Fatalf("decode result on %s: %v", m.Subject, err)
			}
			var r events.ProbeResult
			if err := e.Payload(&r); err != nil {
				l.t.Fatalf("payload of %s on %s: %v", e.Type, m.Subject, err)
			}
			k := r.App + "/" + r.Pool + "/" + r.Endpoint
			// At most 20 s before it completed: a check starts at most one interval late, but a
			// stalled process may complete it much later.
			n, last := r.Window, Window(r.At, l.interval)
			if n > last || n < last-int64(20*time.Second/l.interval) {
				l.t.Fatalf("result %s of %s by %s at %s names window %d, not one near its time", r.ID, k, r.Prober, r.At, n)
			}
			if l.runs[k] == nil {
				l.runs[k] = map[int64][]string{}
			}
			l.runs[k][n] = append(l.runs[k][n], r.Prober)
		default:
			return
		}
	}
}

// settle reads every result published before it was called: the server sends them before its
// answer to a flush. A flush sent while the connection reconnects (its server just restarted)
// may be dropped with the attempt: it is sent again until one is answered.
func (l *checkLog) settle() {
	l.t.Helper()
	var err error
	eventstest.Eventually(l.t, 10*time.Second, func() bool { err = l.nc.FlushTimeout(time.Second); return err == nil },
		"the subscription's server to answer a flush (last: %v)", &err)
	l.read()
}

// twice lists the windows of a check that more than one run took, but those within an interval
// of a stall of at least long: a member silent for its TTL is dead to the others, by design, so
// after such a stall workers see themselves alone until the others' heartbeats come in.
func (l *checkLog) twice(long time.Duration) (twice, excused []string) {
	for k, ws := range l.runs {
		for n, ps := range ws {
			if len(ps) > 1 {
				w := fmt.Sprintf("%s window %d by %v", k, n, ps)
				if l.stalls.during(n, l.interval, long) {
					excused = append(excused, w)
				} else {
					twice = append(twice, w)
				}
			}
		}
	}
	slices.Sort(twice)
	slices.Sort(excused)
	return twice, excused
}

// covered judges count windows from window from on: each must have a result of every check of
// keys, and it returns how many of those each worker ran. A window whose results are not all in
// 10 s after it ended fails the test (on a machine with a load of 25, results of a window took
// over a second to arrive), unless this process stalled within an interval of it, for half an
// interval or more: a worker skips the windows it is more than an interval late for, and counts
// itself dead when it could not store a heartbeat for its TTL. Such a window is not judged and
// the next one is, up to three times count windows in all; where fewer are judged, the test
// skips.
func (l *checkLog) covered(what string, keys []string, from int64, count int) map[string]int {
	l.t.Helper()
	missing := func(n int64) []string {
		var miss []string
		for _, k := range keys {
			if len(l.runs[k][n]) == 0 {
				miss = append(miss, k)
			}
		}
		return miss
	}
	per := map[string]int{}
	var excused []int64
	judged := 0
	for n := from; judged < count; n++ {
		if n >= from+int64(3*count) {
			// Every window not judged was excused by a stall: a machine too busy to judge on says
			// nothing of the workers (two busy loops on two cores stopped this process for 250 ms
			// or more every second, and this failed in most runs).
			l.t.Skipf("%s: only %d of windows %d..%d could be judged: this process stalled for %v", what, judged, from, n-1, l.stalls.list())
		}
		end := SlotTime("", l.interval, 0, n+1)
		for {
			l.read()
			if len(missing(n)) == 0 {
				break
			}
			now := time.Now()
			if l.stalls.during(n, l.interval, l.interval/2) && now.After(end.Add(2*l.interval)) {
				break
			}
			if now.After(end.Add(10 * time.Second)) {
				l.t.Fatalf("%s: window %d (now %d) lacks the results of %d checks: %v", what, n, Window(now, l.interval), len(missing(n)), missing(n))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(missing(n)) > 0 {
			excused = append(excused, n)
			continue
		}
		judged++
		for _, k := range keys {
			per[l.runs[k][n][0]]++
		}
	}
	if len(excused) > 0 {
		l.t.Logf("%s: windows %v not judged: this process stalled for %v", what, excused, l.stalls.list())
	}
	return per
}

// stalls records the times this test process got no CPU for a while (seen as gaps between the
// ticks of a 10 ms ticker): on a machine with a load of 25 it stopped for over a second.
type stalls struct {
	mu   sync.Mutex
	gaps [][2]time.Time
}

func watchStalls(t *testing.T, min time.Duration) *stalls {
	s := &stalls{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				now := time.Now()
				if now.Sub(last) >= min {
					s.mu.Lock()
					s.gaps = append(s.gaps, [2]time.Time{last, now})
					s.mu.Unlock()
				}
				last = now
			}
		}
	}()
	return s
}

// during reports whether a stall of at least long came within one interval of window n.
func (s *stalls) during(n int64, interval, long time.Duration) bool {
	start := time.Unix(0, n*int64(interval)).Add(-interval)
	return s.within(start, start.Add(3*interval), long)
}

// within reports whether a stall of at least long came between from and to.
func (s *stalls) within(from, to time.Time, long time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.gaps {
		if g[1].Sub(g[0]) >= long && g[0].Before(to) && g[1].After(from) {
			return true
		}
	}
	return false
}

// stalled returns how long this process stalled, in all, between from and to: each gap's part
// there beyond the detector's own 10 ms tick.
func (s *stalls) stalled(from, to time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum time.Duration
	for _, g := range s.gaps {
		start, end := g[0].Add(10*time.Millisecond), g[1]
		if start.Before(from) {
			start = from
		}
		if end.After(to) {
			end = to
		}
		if end.After(start) {
			sum += end.Sub(start)
		}
	}
	return sum
}

func (s *stalls) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, g := range s.gaps {
		out = append(out, fmt.Sprintf("%s at %s", g[1].Sub(g[0]).Round(time.Millisecond), g[0].Format("15:04:05.000")))
	}
	return out
}

// acceptLog counts the connections each endpoint's listener accepted: every TCP check.
type acceptLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *acceptLog) add(endpoint string) {
	a.mu.Lock()
	a.n[endpoint]++
	a.mu.Unlock()
}

// TestThreeProbersShareARegionsChecksAndCoverForEachOther runs real workers against one
// JetStream and judges each check's windows by the windows the results name rather than by when the
// endpoints saw them, so a loaded machine delaying a check makes no difference: every window of
// every check is run by exactly one worker, the three share the checks, a dead worker's checks
// move to the others, and a new worker takes its share. Only where this process got no CPU for
// a while (which the workers answer by skipping windows) may a window lack its result.
func TestThreeProbersShareARegionsChecksAndCoverForEachOther(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	const (
		endpoints = 30
		interval  = 500 * time.Millisecond
		jitter    = 50 * time.Millisecond
		heartbeat = 125 * time.Millisecond
		// memberTTL and joinDelay leave a busy machine room to deliver heartbeats late: a live
		// worker is not taken for dead, and every member sees a new one before it starts. Each
		// is a number of heartbeats and each wait of the test a number of intervals, so that
		// with 500 ms checks the test waits half as long as it did with 1 s ones.
		memberTTL = 12 * heartbeat
		joinDelay = 4 * heartbeat
	)
	srv := eventstest.Start(t)
	checks := newCheckLog(t, eventstest.Connect(t, srv.URL), "us-west", interval)
	accepts := &acceptLog{n: map[string]int{}}
	var eps strings.Builder
	var keys []string
	for i := range endpoints {
		name := fmt.Sprintf("e%02d", i)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepts.add("shop/west/" + name)
				c.Close()
			}
		}()
		fmt.Fprintf(&eps, "{name: %s, address: %q}, ", name, l.Addr().String())
		keys = append(keys, "shop/west/"+name)
	}
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, jitter: %s, timeout: 200ms}
    pools:
      - name: west
        endpoints: [%s]
`, interval, jitter, eps.String()))

	type handle struct {
		nc   *nats.Conn
		stop func()
	}
	probers := map[string]handle{}
	start := func(name string) {
		nc := eventstest.Connect(t, srv.URL)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		stop := startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: name,
			Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
			Heartbeat: heartbeat, MemberTTL: memberTTL, JoinDelay: joinDelay,
			BatchWindow: -1}) // each result alone
		probers[name] = handle{nc: nc, stop: stop}
	}
	// activeFrom waits for the members' records and returns the latest instant they start taking
	// checks at.
	activeFrom := func(names ...string) time.Time {
		t.Helper()
		kv, err := srv.JS.KeyValue(context.Background(), MembersBucket)
		var latest time.Time
		eventstest.Eventually(t, 10*time.Second, func() bool {
			if err != nil {
				kv, err = srv.JS.KeyValue(context.Background(), MembersBucket)
				return false
			}
			latest = time.Time{}
			for _, name := range names {
				e, err := kv.Get(context.Background(), "us-west."+name)
				if err != nil {
					return false
				}
				m, err := DecodeMember(e.Value())
				if err != nil {
					t.Fatalf("member record of %s: %v", name, err)
				}
				if m.ActiveFrom.After(latest) {
					latest = m.ActiveFrom
				}
			}
			return true
		}, "records of %v", names)
		return latest
	}
	share := func(what string, per map[string]int, names ...string) {
		t.Helper()
		all := 0
		for _, n := range per {
			all += n
		}
		for _, name := range names {
			if s := float64(per[name]) / float64(all); s < 0.15 {
				t.Errorf("%s: %s ran %.0f%% of the checks: %v", what, name, s*100, per)
			}
		}
	}

	for _, name := range []string{"p1", "p2", "p3"} {
		start(name)
	}
	first := Window(activeFrom("p1", "p2", "p3"), interval) + 1
	share("with p1, p2 and p3", checks.covered("three probers", keys, first, 5), "p1", "p2", "p3")

	// Kill p2 as a crash would: its connection drops and its record is left to expire, a TTL
	// after the others last heard from it.
	probers["p2"].nc.Close()
	probers["p2"].stop()
	moved := Window(time.Now().Add(memberTTL+interval), interval) + 1
	per := checks.covered("after p2 died", keys, moved, 4)
	if per["p2"] != 0 || per["p1"] == 0 || per["p3"] == 0 {
		t.Errorf("after p2 died the checks ran on %v, want p1 and p3 only", per)
	}

	start("p4")
	joined := Window(activeFrom("p4"), interval) + 1
	share("with p1, p3 and p4", checks.covered("after p4 joined", keys, joined, 5), "p1", "p3", "p4")

	// Politeness: no check's window was run twice, neither during the hand-overs nor after.
	for _, name := range []string{"p1", "p3", "p4"} {
		probers[name].stop()
	}
	checks.settle()
	twice, excused := checks.twice(memberTTL - heartbeat)
	if len(excused) > 0 {
		t.Logf("%d windows checked twice after this process stalled for %v: %v", len(excused), checks.stalls.list(), excused)
	}
	if len(twice) > 0 {
		t.Errorf("%d windows were checked twice: %v", len(twice), twice)
	}
	// And where the endpoints see it: every connection they accepted is a check whose result
	// was published, but for the checks cut short when a worker stopped (at most one in flight
	// per endpoint as each of the four stopped).
	accepts.mu.Lock()
	defer accepts.mu.Unlock()
	for _, k := range keys {
		runs := 0
		for _, ps := range checks.runs[k] {
			runs += len(ps)
		}
		if got := accepts.n[k]; got > runs+4 {
			t.Errorf("endpoint %s accepted %d connections, %d more than the checks of it that published a result", k, got, got-runs)
		}
	}
}

// TestAWorkerStoppedInARollingRestartLeavesNoWindowUnchecked stops one of two workers, as a
// rolling restart's SIGTERM does, while its checks of slow endpoints are in flight: every window
// of every check still has its result, the stopped worker's checks in flight published and the
// windows after it left run by the other, and none is run twice.
func TestAWorkerStoppedInARollingRestartLeavesNoWindowUnchecked(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	const (
		endpoints = 20
		interval  = 500 * time.Millisecond
		heartbeat = 100 * time.Millisecond
		memberTTL = 3 * time.Second
		joinDelay = 300 * time.Millisecond
	)
	srv := eventstest.Start(t)
	checks := newCheckLog(t, eventstest.Connect(t, srv.URL), "us-west", interval)
	// Each endpoint answers 300 ms after it is asked: a check is in flight for 300 ms of every
	// 500, so a worker stopped at any moment has some of its checks in flight.
	var eps strings.Builder
	var keys []string
	for i := range endpoints {
		name := fmt.Sprintf("e%02d", i)
		addr := tcpServer(t, func(c net.Conn) {
			if _, err := c.Read(make([]byte, 16)); err != nil {
				return
			}
			answer := time.NewTimer(300 * time.Millisecond)
			defer answer.Stop()
			<-answer.C
			_, _ = c.Write([]byte("+PONG\r\n"))
		})
		fmt.Fprintf(&eps, "{name: %s, address: %q}, ", name, addr)
		keys = append(keys, "shop/west/"+name)
	}
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, jitter: 100ms, timeout: 450ms, send: "PING\r\n", expect: "+PONG"}
    pools:
      - name: west
        endpoints: [%s]
`, interval, eps.String()))
	stops := map[string]func(){}
	for _, name := range []string{"p1", "p2"} {
		stops[name] = startWorker(t, Options{JS: srv.JS, Config: cfg, Region: "us-west", Name: name,
			Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
			Heartbeat: heartbeat, MemberTTL: memberTTL, JoinDelay: joinDelay, BatchWindow: -1})
	}
	// Both take checks once each has run one.
	eventstest.Eventually(t, 10*time.Second, func() bool {
		checks.read()
		by := map[string]bool{}
		for _, ws := range checks.runs {
			for _, ps := range ws {
				for _, p := range ps {
					by[p] = true
				}
			}
		}
		return by["p1"] && by["p2"]
	}, "both workers to take checks")
	checks.covered("with p1 and p2", keys, Window(time.Now(), interval)+1, 2)

	stopped := time.Now()
	stops["p1"]()
	checks.covered("around p1's stop", keys, Window(stopped, interval), 3)
	if per := checks.covered("after p1 left", keys, Window(time.Now(), interval)+1, 2); per["p1"] != 0 {
		t.Errorf("after p1 left the checks ran on %v, want p2 only", per)
	}
	stops["p2"]()
	checks.settle()
	if twice, excused := checks.twice(memberTTL - heartbeat); len(twice) > 0 {
		t.Errorf("%d windows were checked twice: %v (excused after stalls: %v)", len(twice), twice, excused)
	}
}

package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// fakeClock is a clock whose tickers fire as a test moves it on (advance), each tick handled
// before the clock moves again.
type fakeClock struct {
	t       *testing.T
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	clock   *fakeClock
	c       chan time.Time
	every   time.Duration
	next    time.Time
	stopped bool
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) newTicker(d time.Duration) ticker {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTicker{clock: f, c: make(chan time.Time), every: d, next: f.now.Add(d)}
	f.tickers = append(f.tickers, t)
	return t
}

func (t *fakeTicker) Chan() <-chan time.Time { return t.c }

func (t *fakeTicker) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.every, t.next = d, t.clock.now.Add(d)
}

func (t *fakeTicker) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.stopped = true
}

// made is how many tickers were made.
func (f *fakeClock) made() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tickers)
}

// advance moves the clock on by d, a millisecond at a time, and delivers every tick due at each
// step twice: the second is taken once the first is handled, so the clock stands still meanwhile.
func (f *fakeClock) advance(d time.Duration) {
	f.t.Helper()
	for ; d > 0; d -= time.Millisecond {
		f.mu.Lock()
		f.now = f.now.Add(time.Millisecond)
		var due []*fakeTicker
		for _, t := range f.tickers {
			if !t.stopped && !t.next.After(f.now) {
				due = append(due, t)
				t.next = t.next.Add(t.every)
			}
		}
		now := f.now
		f.mu.Unlock()
		for _, t := range due {
			for range 2 {
				select {
				case t.c <- now:
				case <-time.After(5 * time.Second):
					f.t.Fatalf("a tick at %s not taken within 5s", now.Format(time.StampMilli))
				}
			}
		}
	}
}

// logLines keeps the lines logged.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

// count is how many lines logged so far hold s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// TestAChangedHeartbeatIntervalChangesHowOftenTheControllerDecidesAndWatchesForStalls runs the
// controller on a clock the test moves, with edge-west's heartbeat interval at 1s (the
// controller decides every 100ms then), and applies a version that makes it 20ms (fall 3). From
// then on, while the controller runs on time, it never logs that it stalled, and edge-west,
// silent from one heartbeat on, is down within fall × interval, the tolerance and a tick of the
// new interval (10ms), not at the next tick of the old one.
func TestAChangedHeartbeatIntervalChangesHowOftenTheControllerDecidesAndWatchesForStalls(t *testing.T) {
	version := func(n uint64, interval time.Duration) *config.Config {
		c := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: %s, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
`, interval))
		c.Version = n
		return c
	}
	start := time.Unix(1700000000, 0)
	clock := &fakeClock{t: t, now: start}
	ns := eventstest.Start(t)
	logs := &logLines{}
	configs := make(chan *config.Config)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: version(1, time.Second), Name: "controller-1", Log: zerolog.New(logs), Now: clock.Now,
			Configs: configs, newTicker: clock.newTicker})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return clock.made() == 2 && logs.count("controller started") == 1 },
		"the controller started with its two tickers")

	// beat has edge-west's heartbeat recorded, announcing interval.
	const unknown = "heartbeat of an edge that is not configured"
	beat := func(interval time.Duration) {
		t.Helper()
		n := logs.count(unknown)
		for _, edge := range []string{"edge-west", "edge-nowhere"} { // the second tells when the first is recorded
			e, err := events.New(events.TypeEdgeHeartbeat, "test", time.Now(), events.Heartbeat{Edge: edge, Seq: 1, IntervalMS: interval.Milliseconds()})
			if err == nil {
				err = ns.Conn.Publish(events.HeartbeatSubject(edge), e.Encode())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		eventstest.Eventually(t, 5*time.Second, func() bool { return logs.count(unknown) > n }, "the heartbeats recorded")
	}
	west := events.EdgeStateSubject("edge-west")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		beat(time.Second)
		clock.advance(10 * time.Millisecond)
		return types(history(t, ns, events.StreamState, west)) == "U"
	}, "edge-west up")

	configs <- version(2, 20*time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.count("configuration applied") == 1 }, "version 2 applied")
	stalls := logs.count("controller stalled")
	// Move on to a multiple of the old tick from the start: kept, its next tick would be 100ms
	// after the last heartbeat.
	clock.advance(100*time.Millisecond - clock.Now().Sub(start)%(100*time.Millisecond))
	beat(20 * time.Millisecond)
	last := clock.Now()
	clock.advance(200 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, west)) == "UD" },
		"edge-west down")
	h := history(t, ns, events.StreamState, west)
	if took, limit := h[1].Time.Sub(last), 3*20*time.Millisecond+Tolerance(20*time.Millisecond)+10*time.Millisecond; took > limit {
		t.Errorf("edge-west down %s after its last heartbeat, want within %s (fall × interval, the tolerance and a tick of 10ms)", took, limit)
	}
	if n := logs.count("controller stalled") - stalls; n > 0 {
		t.Errorf("the controller logged %d stalls after the interval changed, though it ran on time", n)
	}
}

package prober

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := fakeTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, ft)
	return ft.ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x.ch == ft.ch {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// advance moves time on by d and fires the timers that fall due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, ft := range c.timers {
		if ft.at.After(c.now) {
			kept = append(kept, ft)
		} else {
			ft.ch <- c.now
		}
	}
	c.timers = kept
}

// armed reports whether some timer is waiting for a later instant: the dispatcher is idle.
func (c *fakeClock) armed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers) > 0
}

type run struct {
	key string
	n   int64
	at  time.Time
}

func TestDispatcherRunsEachOwnedCheckOncePerWindowAtItsInstantAndTakesOverFromADeadMember(t *testing.T) {
	const step = 5 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	var eps strings.Builder
	for i := range 40 {
		fmt.Fprintf(&eps, "{name: e%02d, address: \"127.0.0.1:%d\"}, ", i, 10000+i)
	}
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: 100ms}
    pools:
      - name: west
        endpoints: [`+eps.String()+`]
`)
	self := Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1500}
	roster := NewRoster(self)
	roster.Seen(self, t0.Add(time.Hour)) // its heartbeats are stored throughout
	// p2 was heard from at t0 and then died: it is live until t0+1.5s.
	roster.Seen(Member{Region: "us-west", Name: "p2", ActiveFrom: t0, TTLMillis: 1500}, t0)
	w := &worker{
		o:          Options{Config: cfg, Region: "us-west", Name: "p1", Clock: clock},
		log:        zerolog.New(zerolog.NewTestWriter(t)),
		members:    &membership{roster: roster, clock: clock},
		transports: newSharedTransports(),
		pool:       newPool(time.Second),
	}
	t.Cleanup(w.pool.close)
	var mu sync.Mutex
	var runs []run
	w.run = func(_ context.Context, s *slot, n int64) {
		mu.Lock()
		runs = append(runs, run{key: s.key, n: n, at: clock.Now()})
		mu.Unlock()
		s.running.Store(false)
		w.inflight.Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.dispatch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for clock.Now().Before(t0.Add(5 * time.Second)) {
		eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its next instant")
		clock.advance(step)
	}
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its next instant")

	mu.Lock()
	defer mu.Unlock()
	seen := map[string]map[int64]int{}
	for _, r := range runs {
		want := SlotTime(r.key, time.Second, 100*time.Millisecond, r.n)
		if r.at.Before(want) || r.at.Sub(want) >= step {
			t.Errorf("%s window %d ran at %s, its instant is %s", r.key, r.n, r.at.Sub(t0), want.Sub(t0))
		}
		if seen[r.key] == nil {
			seen[r.key] = map[int64]int{}
		}
		seen[r.key][r.n]++
	}
	first := Window(t0, time.Second)
	both := []string{"p1", "p2"}
	for _, k := range keys40() {
		for n := first; n < first+5; n++ {
			at := SlotTime(k, time.Second, 100*time.Millisecond, n)
			if at.Before(t0) {
				continue
			}
			want := 1
			if at.Before(t0.Add(1500*time.Millisecond)) && Owner(k, both) == "p2" {
				want = 0 // p2 was still live: its check, not ours
			}
			if got := seen[k][n]; got != want {
				t.Errorf("%s ran %d times in window %d (instant %s), want %d", k, got, n-first, at.Sub(t0), want)
			}
		}
	}
}

func keys40() []string {
	var ks []string
	for i := range 40 {
		ks = append(ks, fmt.Sprintf("shop/west/e%02d", i))
	}
	return ks
}

func TestAWorkerPausedForSeveralIntervalsSkipsTheMissedWindowsInsteadOfCatchingUp(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: 100ms}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:10000"}, {name: b, address: "127.0.0.1:10001"}]
`)
	self := Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1500}
	roster := NewRoster(self)
	roster.Seen(self, t0.Add(time.Hour))
	w := &worker{
		o:       Options{Config: cfg, Region: "us-west", Name: "p1", Clock: clock},
		log:     zerolog.New(zerolog.NewTestWriter(t)),
		members: &membership{roster: roster, clock: clock}, transports: newSharedTransports(), pool: newPool(time.Second),
	}
	t.Cleanup(w.pool.close)
	var mu sync.Mutex
	runs := map[string]int{}
	w.run = func(_ context.Context, s *slot, _ int64) {
		mu.Lock()
		runs[s.key]++
		mu.Unlock()
		s.running.Store(false)
		w.inflight.Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.dispatch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its next instant")
	clock.advance(3500 * time.Millisecond) // the process was frozen for three and a half intervals
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its next instant")
	w.inflight.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"shop/west/a", "shop/west/b"} {
		if runs[k] > 1 {
			t.Errorf("%s ran %d times at once after the pause, want at most one", k, runs[k])
		}
	}
	if w.skipped.Load() == 0 {
		t.Error("no skipped window was counted")
	}
}

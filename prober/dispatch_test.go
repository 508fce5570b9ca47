package prober

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	// set receives, when it has room, as a timer is set: waitArmed wakes on it.
	set chan struct{}
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
	select {
	case c.setLocked() <- struct{}{}:
	default:
	}
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

// waitArmed waits up to within until some timer is waiting for a later instant, waking as each
// is set, and reports whether one is. Polling armed every 5 ms cost each step of a dispatcher
// driven through hundreds of them a sleep, most of those tests' time.
func (c *fakeClock) waitArmed(within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		armed, set := len(c.timers) > 0, c.setLocked()
		c.mu.Unlock()
		if armed {
			return true
		}
		select {
		case <-set:
		case <-deadline.C:
			return c.armed()
		}
	}
}

// setLocked returns c.set, made on first use; c.mu is held.
func (c *fakeClock) setLocked() chan struct{} {
	if c.set == nil {
		c.set = make(chan struct{}, 1)
	}
	return c.set
}

// closed is a channel that is closed: a record saying when the worker stops that is stored.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// stopsAtOnce is a worker's retire that stops taking checks at once, its record stored.
func stopsAtOnce(clock Clock) func() (time.Time, <-chan struct{}) {
	return func() (time.Time, <-chan struct{}) { return clock.Now(), closed }
}

// run is one run the dispatcher started: the check, its window and the clock's time then.
type run struct {
	key string
	n   int64
	at  time.Time
}

// dispatchRecording starts w's dispatcher until the test ends, with a run func that records
// each run it starts and ends it at once. runs returns those recorded so far; idle waits until
// the dispatcher waits for its next instant and every run it started has ended, so no run reads
// the clock after the test moves it on.
func dispatchRecording(t *testing.T, w *worker, clock *fakeClock) (runs func() []run, idle func()) {
	var mu sync.Mutex
	var rs []run
	w.run = func(_ context.Context, s *slot, n int64, _ time.Duration) {
		mu.Lock()
		rs = append(rs, run{key: s.key, n: n, at: clock.Now()})
		mu.Unlock()
	}
	w.retire = stopsAtOnce(clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.dispatch(ctx, ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	runs = func() []run {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(rs)
	}
	idle = func() {
		if !clock.waitArmed(5 * time.Second) {
			t.Fatal("not within 5s: the dispatcher waits for its next instant")
		}
		w.inflight.Wait()
	}
	return runs, idle
}

func TestDispatcherRunsEachOwnedCheckOncePerWindowAtItsInstantAndTakesOverFromADeadMember(t *testing.T) {
	const step = 5 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	cfg := shopOf40(t, "{type: tcp, interval: 1s, jitter: 100ms}")
	self := Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1500}
	roster := NewRoster(self, 100*time.Millisecond)
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
	runs, idle := dispatchRecording(t, w, clock)
	stepUntil(clock, idle, t0.Add(5*time.Second), step)

	seen := map[string]map[int64]int{}
	for _, r := range runs() {
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

// shopOf40 is a configuration of app shop with one pool of 40 endpoints, e00 to e39 (the checks
// keys40 names), each checked by check.
func shopOf40(t *testing.T, check string) *config.Config {
	t.Helper()
	var eps strings.Builder
	for i := range 40 {
		fmt.Fprintf(&eps, "{name: e%02d, address: \"127.0.0.1:%d\"}, ", i, 10000+i)
	}
	return testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: `+check+`
    pools:
      - name: west
        endpoints: [`+eps.String()+`]
`)
}

// stepUntil moves clock on by step until end, each step once idle has waited for the runs
// started to note their instant (a run that read the clock after the next step would seem late),
// and waits for idle once more at end.
func stepUntil(clock *fakeClock, idle func(), end time.Time, step time.Duration) {
	for clock.Now().Before(end) {
		idle()
		clock.advance(step)
	}
	idle()
}

// perWindow counts the runs of each check in each window.
func perWindow(runs []run) map[string]map[int64]int {
	seen := map[string]map[int64]int{}
	for _, r := range runs {
		if seen[r.key] == nil {
			seen[r.key] = map[int64]int{}
		}
		seen[r.key][r.n]++
	}
	return seen
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
	w := loneWorker(t, cfg, nil, clock, t0)
	recorded, idle := dispatchRecording(t, w, clock)

	idle()
	clock.advance(3500 * time.Millisecond) // the process was frozen for three and a half intervals
	idle()
	runs := map[string]int{}
	for _, r := range recorded() {
		runs[r.key]++
	}
	for _, k := range []string{"shop/west/a", "shop/west/b"} {
		if runs[k] > 1 {
			t.Errorf("%s ran %d times at once after the pause, want at most one", k, runs[k])
		}
	}
	if w.skipped.Load() == 0 {
		t.Error("no skipped window was counted")
	}
}

// fireNext moves time on to the earliest timer's instant and fires it.
func (c *fakeClock) fireNext() {
	c.mu.Lock()
	next := c.timers[0].at
	for _, ft := range c.timers[1:] {
		if ft.at.Before(next) {
			next = ft.at
		}
	}
	d := next.Sub(c.now)
	c.mu.Unlock()
	c.advance(d)
}

func TestReplacedConfigurationsKeepEachChecksInstantsWithNoWindowRunTwiceOrSkipped(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	// shop's checks stay, apart from the ones a configuration drops or adds; api's change
	// interval from one configuration to the next.
	conf := func(shop []string, apiInterval string) *config.Config {
		var eps strings.Builder
		for i, e := range shop {
			fmt.Fprintf(&eps, "{name: %s, address: \"127.0.0.%d:10000\"}, ", e, 1+i)
		}
		return testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: 100ms}
    pools:
      - name: west
        endpoints: [`+eps.String()+`]
  - name: api
    fqdn: api.demo.test
    check: {type: tcp, interval: `+apiInterval+`}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:9000"}, {name: b, address: "127.0.0.1:9001"}]
`)
	}
	names := func(prefix string, n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("%s%02d", prefix, i))
		}
		return s
	}
	a := conf(names("e", 20), "300ms")
	b := conf(append(names("e", 10), names("f", 10)...), "500ms")
	// Each configuration from an instant on: the first from the start, the others each the
	// moment a check has run at that very instant, so a window that check just ran in is due
	// again by the clock when its configuration replaces the one it ran under.
	type period struct {
		c    *config.Config
		from time.Time
	}
	periods := []period{{c: a, from: t0.Add(-1)}}
	replaceAt := []struct {
		after time.Duration
		c     *config.Config
	}{{1500 * time.Millisecond, a}, {2500 * time.Millisecond, b}, {4 * time.Second, b}, {4850 * time.Millisecond, a}}
	const end = 6 * time.Second

	configs := make(chan *config.Config)
	w := loneWorker(t, a, configs, clock, t0)
	recorded, idle := dispatchRecording(t, w, clock)
	for idle(); clock.Now().Before(t0.Add(end)); idle() {
		clock.fireNext()
		if len(replaceAt) > 0 && !clock.Now().Before(t0.Add(replaceAt[0].after)) {
			idle() // the checks due at this instant have run
			configs <- replaceAt[0].c
			// Taken only once the dispatcher is back waiting: the replacement's pass is done.
			configs <- nil
			periods = append(periods, period{c: replaceAt[0].c, from: clock.Now()})
			replaceAt = replaceAt[1:]
		}
	}
	idle()
	last := clock.Now()

	type ran struct {
		key string
		n   int64
	}
	runs := map[ran][]time.Time{}
	for _, r := range recorded() {
		runs[ran{r.key, r.n}] = append(runs[ran{r.key, r.n}], r.at)
	}
	// Every instant of every configured check while its configuration was in force ran once,
	// at that instant, and nothing else ran; a check whose interval a configuration changed
	// starts at the first of its new instants one new interval or more after its last run.
	want := map[ran]time.Time{}
	lastAt := map[string]time.Time{}
	held := map[time.Time]int{} // per change of interval, the instants held back
	var before map[string]Target
	for i, p := range periods {
		to := last
		if i+1 < len(periods) {
			to = periods[i+1].from
		}
		in := map[string]Target{}
		for _, tg := range Targets(p.c) {
			in[tg.Key()] = tg
			interval, jitter := tg.Check.Interval.D(), tg.Check.Jitter.D()
			from := p.from
			if b, ok := before[tg.Key()]; ok && b.Check.Interval != tg.Check.Interval {
				from = lastAt[tg.Key()].Add(interval - 1)
			}
			for n := Window(p.from, interval); ; n++ {
				at := SlotTime(tg.Key(), interval, jitter, n)
				if at.After(to) {
					break
				}
				switch {
				case !at.After(p.from):
				case !at.After(from):
					held[p.from]++
				default:
					want[ran{tg.Key(), n}] = at
					lastAt[tg.Key()] = at
				}
			}
		}
		before = in
	}
	for r, at := range want {
		if got := runs[r]; len(got) != 1 || !got[0].Equal(at) {
			t.Errorf("%s window %d (instant %s) ran at %v, want once at its instant", r.key, r.n, at.Sub(t0), offsets(got, t0))
		}
	}
	for r, got := range runs {
		if _, ok := want[r]; !ok {
			t.Errorf("%s ran in window %d at %v, which no configuration in force had", r.key, r.n, offsets(got, t0))
		}
	}
	// No check ran twice closer than the interval less the jitter in force at the second run,
	// across a change of interval either way as within one: api, without jitter, a full
	// interval apart.
	byKey := map[string][]time.Time{}
	for r, got := range runs {
		byKey[r.key] = append(byKey[r.key], got...)
	}
	for key, ts := range byKey {
		slices.SortFunc(ts, time.Time.Compare)
		for i := 1; i < len(ts); i++ {
			p := periods[0]
			for _, q := range periods {
				if q.from.Before(ts[i]) {
					p = q
				}
			}
			for _, tg := range Targets(p.c) {
				if tg.Key() != key {
					continue
				}
				if gap, least := ts[i].Sub(ts[i-1]), tg.Check.Interval.D()-tg.Check.Jitter.D(); gap < least {
					t.Errorf("%s ran at %s and again at %s, %s apart: want at least %s (interval %s, jitter %s)",
						key, ts[i-1].Sub(t0), ts[i].Sub(t0), gap, least, tg.Check.Interval.D(), tg.Check.Jitter.D())
				}
			}
		}
	}
	if len(want) < 150 {
		t.Fatalf("only %d runs expected: the test checks too little", len(want))
	}
	// Both changes of api's interval, the lengthening and the shortening, come where an instant
	// of the new interval falls less than an interval after api's last run.
	if len(held) != 2 {
		t.Fatalf("instants held back at the changes of interval: %v, want some at both", held)
	}
}

func offsets(ts []time.Time, t0 time.Time) []time.Duration {
	var ds []time.Duration
	for _, t := range ts {
		ds = append(ds, t.Sub(t0))
	}
	return ds
}

// A configuration can arrive when a check's instant has passed but the dispatcher has not
// started it yet (its timer fired, and select took the configuration first): the replacement
// must still run that window, late, rather than move the check on to the next one.
func TestAConfigurationTakenBeforeADueCheckStartedStillRunsItsWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: 100ms}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:10000"}]
`)
	configs := make(chan *config.Config)
	w := loneWorker(t, cfg, configs, clock, t0)
	recorded, idle := dispatchRecording(t, w, clock)

	tg := Targets(cfg)[0]
	n, at := NextSlot(tg.Key(), time.Second, 100*time.Millisecond, t0)
	idle()
	// The check's instant passes, its timer not yet taken, and the configuration comes.
	clock.mu.Lock()
	clock.now = at.Add(time.Millisecond)
	clock.mu.Unlock()
	configs <- cfg
	configs <- nil // taken once the replacement's pass is done
	idle()

	var runs []int64
	for _, r := range recorded() {
		runs = append(runs, r.n)
	}
	if !slices.Equal(runs, []int64{n}) {
		t.Fatalf("windows run %v, want window %d (instant %s) once", runs, n, at.Sub(t0))
	}
}

// A configuration that changes only a check's jitter keeps the windows apart: the window the
// check ran in just before is not run again at its new instant later in the same window.
func TestAConfigurationThatChangesTheJitterDoesNotRunAWindowAgain(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	conf := func(jitter string) *config.Config {
		var eps strings.Builder
		for i := range 20 {
			fmt.Fprintf(&eps, "{name: e%02d, address: \"127.0.0.1:%d\"}, ", i, 10000+i)
		}
		return testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: `+jitter+`}
    pools:
      - name: west
        endpoints: [`+eps.String()+`]
`)
	}
	before, after := conf("0s"), conf("500ms")
	// A check whose instant of the first window comes later with the new jitter.
	first := Window(t0, time.Second) + 1
	var key string
	var oldAt, newAt time.Time
	for _, tg := range Targets(before) {
		o, n := SlotTime(tg.Key(), time.Second, 0, first), SlotTime(tg.Key(), time.Second, 500*time.Millisecond, first)
		if n.After(o) {
			key, oldAt, newAt = tg.Key(), o, n
			break
		}
	}
	if key == "" {
		t.Fatal("no check's instant comes later with the new jitter")
	}
	configs := make(chan *config.Config)
	w := loneWorker(t, before, configs, clock, t0)
	recorded, idle := dispatchRecording(t, w, clock)
	idle()
	clock.advance(oldAt.Sub(clock.Now()))
	idle() // the check ran in window first at its old instant
	configs <- after
	configs <- nil
	for idle(); clock.Now().Before(newAt.Add(time.Millisecond)); idle() {
		clock.fireNext()
	}
	runs := map[int64]int{}
	for _, r := range recorded() {
		if r.key == key {
			runs[r.n]++
		}
	}
	if runs[first] != 1 {
		t.Fatalf("%s ran %d times in window %d (instants %s before the new jitter, %s after), want once", key, runs[first], first, oldAt.Sub(t0), newAt.Sub(t0))
	}
}

// A check whose interval a configuration changes runs next one new interval after its last run,
// or up to one more (and its jitter) to land on an instant of the new interval: lengthened, it
// waits out the new interval; shortened, it does not wait out the old one; changed again before
// it ran, the interval or only the jitter, it still counts from its last run.
func TestAChangedIntervalRunsTheCheckNextOneNewIntervalAfterItsLastRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		checks []string // interval (and jitter): the first in force from the start, the others sent right after a run, 100 ms apart
	}{
		{name: "lengthened from 1s to 10s, it waits 10 s", checks: []string{"1s", "10s"}},
		{name: "shortened from 10s to 1s, it waits 1 s, not 10 s", checks: []string{"10s", "1s"}},
		{name: "lengthened and shortened again before it ran, it waits 1 s", checks: []string{"1s", "10s", "1s"}},
		{name: "shortened and lengthened again before it ran, it waits 10 s", checks: []string{"10s", "1s", "10s"}},
		// The jitter puts the instant of the window chosen under no jitter (15.3 s) at 10.1 s,
		// 8.8 s after the last run at 1.3 s.
		{name: "lengthened from 1s to 10s, then given a jitter before it ran, it waits 10 s", checks: []string{"1s", "10s", "10s, jitter: 10s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			clock := &fakeClock{now: t0}
			conf := func(check string) *config.Config {
				return testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: `+check+`}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:10000"}]
`)
			}
			configs := make(chan *config.Config)
			w := loneWorker(t, conf(tc.checks[0]), configs, clock, t0)
			recorded, idle := dispatchRecording(t, w, clock)
			ran := func() int { return len(recorded()) }

			for idle(); ran() < 2; idle() {
				clock.fireNext()
			}
			rs := recorded()
			lastRun := rs[len(rs)-1].at
			for i, c := range tc.checks[1:] {
				if i > 0 {
					clock.advance(100 * time.Millisecond)
					idle()
				}
				configs <- conf(c)
				configs <- nil // taken once the replacement's pass is done
			}
			for idle(); ran() < 3; idle() {
				clock.fireNext()
			}

			var runs []time.Time
			for _, r := range recorded() {
				runs = append(runs, r.at)
			}
			k := conf(tc.checks[len(tc.checks)-1]).Apps[0].Check
			interval, most := k.Interval.D(), 2*k.Interval.D()+k.Jitter.D()
			if got := runs[2].Sub(lastRun); len(runs) != 3 || got < interval || got >= most {
				t.Fatalf("after the run at %s the check ran at %v, want once, at least %s and under %s after it",
					lastRun.Sub(t0), offsets(runs[2:], t0), interval, most)
			}
		})
	}
}

// loneWorker is prober p1 of us-west, live throughout and alone in its region, dispatching cfg
// on clock from t0 and taking the configurations sent on configs (nil: none).
func loneWorker(t *testing.T, cfg *config.Config, configs chan *config.Config, clock Clock, t0 time.Time) *worker {
	self := Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1500}
	roster := NewRoster(self, 100*time.Millisecond)
	roster.Seen(self, t0.Add(time.Hour))
	w := &worker{
		o:       Options{Config: cfg, Configs: configs, Region: "us-west", Name: "p1", Clock: clock},
		log:     zerolog.New(zerolog.NewTestWriter(t)),
		members: &membership{roster: roster, clock: clock}, transports: newSharedTransports(), pool: newPool(time.Second),
	}
	t.Cleanup(w.pool.close)
	return w
}

// A window owed while the check's run is in flight runs with the configuration in force when it
// starts: one that moves the endpoint meanwhile has it probe the new address, and one that drops
// the endpoint has it not probed again.
func TestAnOwedWindowRunsWithTheConfigurationAppliedBeforeItStarts(t *testing.T) {
	conf := func(endpoint string) *config.Config {
		return testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, jitter: 100ms}
    pools:
      - name: west
        endpoints: [`+endpoint+`, {name: b, address: "127.0.0.1:10002"}]
`)
	}
	for _, tc := range []struct {
		name, endpoint string
		want           []string // the addresses of the owed window's runs
	}{
		{"moved", `{name: a, address: "127.0.0.1:10001"}`, []string{"127.0.0.1:10001"}},
		{"dropped", `{name: c, address: "127.0.0.1:10003"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			clock := &fakeClock{now: t0}
			configs := make(chan *config.Config)
			w := loneWorker(t, conf(`{name: a, address: "127.0.0.1:10000"}`), configs, clock, t0)
			release := make(chan struct{})
			var mu sync.Mutex
			var addrs []string
			w.run = func(_ context.Context, s *slot, n int64, _ time.Duration) {
				if s.key != "shop/west/a" {
					return
				}
				mu.Lock()
				addrs = append(addrs, s.t.Address)
				first := len(addrs) == 1
				mu.Unlock()
				if first {
					<-release // the first run hangs past its next window's instant
				}
			}
			w.retire = stopsAtOnce(clock)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { w.dispatch(ctx, ctx); close(done) }()
			defer func() { cancel(); <-done }()

			n, at := NextSlot("shop/west/a", time.Second, 100*time.Millisecond, t0)
			eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its first instant")
			clock.advance(at.Sub(t0))
			eventstest.Eventually(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(addrs) == 1 },
				"the first run to start")
			// The next window's instant passes while the first run hangs: it is owed.
			next := SlotTime("shop/west/a", time.Second, 100*time.Millisecond, n+1)
			clock.advance(next.Sub(clock.Now()) + time.Millisecond)
			eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher to owe the next window and wait")
			configs <- conf(tc.endpoint)
			configs <- nil // taken once the replacement is built
			close(release)
			w.inflight.Wait()

			mu.Lock()
			defer mu.Unlock()
			if got := addrs[1:]; !slices.Equal(got, tc.want) {
				t.Fatalf("the owed window probed %v after the configuration changed, want %v", got, tc.want)
			}
		})
	}
}

// windowsRun is a lone worker of one endpoint checked every second, on clock from t0, that
// records the windows it runs instead of checking; ran lists them.
func windowsRun(t *testing.T, clock *fakeClock, t0 time.Time) (w *worker, ran func() []int64) {
	t.Helper()
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools: [{name: west, endpoints: [{name: a, address: "127.0.0.1:10000"}]}]
`)
	w = loneWorker(t, cfg, nil, clock, t0)
	var mu sync.Mutex
	var windows []int64
	w.run = func(_ context.Context, _ *slot, n int64, _ time.Duration) {
		mu.Lock()
		windows = append(windows, n)
		mu.Unlock()
	}
	return w, func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(windows)
	}
}

// A stopping worker runs every window of its checks whose instant comes before the instant it
// named for stopping, however late its dispatcher wakes for the last of them: the others
// counted those windows as its own. One it woke for only after that instant was left unrun.
func TestAStoppingWorkerRunsItsLastWindowBeforeItStopsWhenItWakesLate(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	w, ran := windowsRun(t, clock, t0)
	n, at := NextSlot("shop/west/a", time.Second, 0, t0.Add(time.Second))
	retired := make(chan time.Time, 1)
	w.retire = func() (time.Time, <-chan struct{}) {
		until := clock.Now().Add(100 * time.Millisecond)
		retired <- until
		return until, closed
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.dispatch(ctx, context.Background()); close(done) }()
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its first instant")
	clock.advance(at.Add(-50 * time.Millisecond).Sub(t0))
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for the window")
	w.inflight.Wait()
	before := len(ran())
	cancel()
	until := <-retired // the window at `at` comes 50 ms before it
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the stopping dispatcher waits for the window")
	clock.advance(150 * time.Millisecond) // it wakes 100 ms late, past until
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stopping dispatcher did not return once past the instant it stops at")
	}
	w.inflight.Wait()
	if got := ran()[before:]; !slices.Equal(got, []int64{n}) {
		t.Fatalf("stopping at %s, the worker ran windows %v after waking at %s, want its window %d (instant %s)",
			until.Sub(t0), got, clock.Now().Sub(t0), n, at.Sub(t0))
	}
}

// A stopping worker whose record saying when it stops is stored only after that instant (the
// bucket slow to answer, electing a leader) goes on running its windows until the record is
// stored: till then the others count them as its own. It stopped at the instant it named, and
// the windows from then until the others read the record had no result.
func TestAStoppingWorkerRunsItsWindowsUntilTheRecordSayingItStopsIsStored(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	w, ran := windowsRun(t, clock, t0)
	stored := make(chan struct{})
	retired := make(chan struct{})
	w.retire = func() (time.Time, <-chan struct{}) {
		close(retired)
		return clock.Now().Add(100 * time.Millisecond), stored
	}
	n, at := NextSlot("shop/west/a", time.Second, 0, t0.Add(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.dispatch(ctx, context.Background()); close(done) }()
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for its first instant")
	clock.advance(at.Add(-500 * time.Millisecond).Sub(t0))
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the dispatcher waits for the window")
	cancel() // stops at at-400ms; the record saying so is not stored yet
	<-retired
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the stopping dispatcher waits")
	clock.advance(600 * time.Millisecond) // past at: the window is due, the record still unstored
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(ran(), n) },
		"the window after the instant it named, before its record was stored, to run")
	close(stored)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stopping dispatcher did not return once its record was stored")
	}
}

// A running worker counts itself in the view it shards its checks by, whether or not its own
// lease is live: one whose record lapsed (its heartbeats starved on a loaded host) read a view of
// no member, or one without itself, and ran none of its checks until it renewed the lease, so
// the windows meanwhile had no result (a CI flake: "60 windows have none").
func TestAWorkerWhoseOwnLeaseLapsedStillRunsItsShare(t *testing.T) {
	for _, tc := range []struct {
		name   string
		others []string // live throughout
	}{
		{name: "alone, its view empty", others: nil},
		{name: "beside p2, its view without itself", others: []string{"p2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const step = 10 * time.Millisecond
			t0 := time.Unix(1_700_000_000, 0)
			clock := &fakeClock{now: t0}
			cfg := shopOf40(t, "{type: tcp, interval: 1s}")
			w := loneWorker(t, cfg, nil, clock, t0)
			// p1's own lease runs out at t0+1.5s and is not renewed.
			w.members.roster.Seen(Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: 1500}, t0)
			for _, o := range tc.others {
				w.members.roster.Seen(Member{Region: "us-west", Name: o, ActiveFrom: t0, TTLMillis: 1500}, t0.Add(time.Hour))
			}
			runs, idle := dispatchRecording(t, w, clock)
			stepUntil(clock, idle, t0.Add(4*time.Second), step)
			seen := perWindow(runs())
			members := append([]string{"p1"}, tc.others...)
			first := Window(t0, time.Second)
			missed := 0
			for _, k := range keys40() {
				if Owner(k, members) != "p1" {
					continue
				}
				for n := first; n < first+4; n++ {
					if at := SlotTime(k, time.Second, 0, n); !at.Before(t0) && seen[k][n] != 1 {
						missed++
						t.Logf("%s ran %d times in window %d (instant %s), want once", k, seen[k][n], n-first, at.Sub(t0))
					}
				}
			}
			if missed > 0 {
				t.Errorf("%d windows of p1's checks were not run once with its own lease lapsed at 1.5 s", missed)
			}
		})
	}
}

// A worker cut off from NATS (its own records and the others' stop coming) keeps running its
// share of the region's checks as the members stood when its own lease lapsed, however long the
// cut lasts. It counted itself always, and the others only until their leases, held while it hears
// nothing, ran out BlindGrace later: from then it ran every check of the region, as did every
// worker of a region cut off from NATS at once (50 probers: 50 runs of each check a window),
// though none of their results could be stored.
func TestAWorkerCutOffFromNATSRunsOnlyItsSharePastBlindGrace(t *testing.T) {
	const step = 20 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{now: t0}
	cfg := shopOf40(t, "{type: tcp, interval: 1s}")
	w := loneWorker(t, cfg, nil, clock, t0)
	members := []string{"p1", "p2", "p3"}
	// Every record, p1's own included, last came at t0; then p1 is cut off.
	for _, name := range members {
		w.members.roster.Seen(Member{Region: "us-west", Name: name, ActiveFrom: t0, TTLMillis: 1500}, t0)
	}
	w.members.roster.Echoed(t0)
	runs, idle := dispatchRecording(t, w, clock)
	end := t0.Add(BlindGrace + 5*time.Second)
	stepUntil(clock, idle, end, step)
	seen := perWindow(runs())
	first := Window(t0, time.Second)
	wrong, others := 0, 0
	for _, k := range keys40() {
		want := 0
		if Owner(k, members) == "p1" {
			want = 1
		}
		for n := first; ; n++ {
			at := SlotTime(k, time.Second, 0, n)
			if !at.Before(end) {
				break
			}
			if at.Before(t0) || seen[k][n] == want {
				continue
			}
			wrong++
			if want == 0 {
				others++
			}
			if wrong <= 5 {
				t.Logf("%s (of %s) ran %d times in the window at %s, want %d", k, Owner(k, members), seen[k][n], at.Sub(t0), want)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("cut off from NATS at 0 s for %s, p1 ran %d windows not as its share of p1, p2, p3 (%d of the others' checks)", end.Sub(t0), wrong, others)
	}
}

package prober

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// acceptLog records when each endpoint's listener accepted a connection.
type acceptLog struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (a *acceptLog) add(endpoint string, t time.Time) {
	a.mu.Lock()
	a.at[endpoint] = append(a.at[endpoint], t)
	a.mu.Unlock()
}

// closestRuns returns the shortest gap between two connections to one endpoint, and which.
func (a *acceptLog) closestRuns() (time.Duration, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	best, which := time.Duration(1<<62), ""
	for ep, ts := range a.at {
		for i := 1; i < len(ts); i++ {
			if d := ts[i].Sub(ts[i-1]); d < best {
				best, which = d, ep
			}
		}
	}
	return best, which
}

func TestThreeProbersShareARegionsChecksAndCoverForEachOther(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	const (
		endpoints = 30
		interval  = 400 * time.Millisecond
		jitter    = 40 * time.Millisecond
		heartbeat = 100 * time.Millisecond
		memberTTL = 300 * time.Millisecond // under one interval: a dead worker's checks move within two
	)
	srv := eventstest.Start(t)
	accepts := &acceptLog{at: map[string][]time.Time{}}
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
				accepts.add(name, time.Now())
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
		nc   interface{ Close() }
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
			Heartbeat: heartbeat, MemberTTL: memberTTL})
		probers[name] = handle{nc: nc, stop: stop}
	}

	now := func() int64 { return Window(time.Now(), interval) }
	// byWindow maps every stored result to its check and window: the window of the last instant
	// of the check at or before the moment the check started.
	byWindow := func(from, to int64) map[string]map[int64]string {
		got := map[string]map[int64]string{}
		for _, r := range results(t, srv.JS) {
			k := r.App + "/" + r.Pool + "/" + r.Endpoint
			start := r.At.Add(-time.Duration(r.LatencyMicros) * time.Microsecond)
			n := Window(start, interval)
			if SlotTime(k, interval, jitter, n).After(start) {
				n--
			}
			if n < from || n > to {
				continue
			}
			if got[k] == nil {
				got[k] = map[int64]string{}
			}
			got[k][n] = r.Prober
		}
		return got
	}
	// coverage waits until every check has a result in every window of [from, to], then returns
	// how many checks each prober ran there.
	coverage := func(what string, from, to int64) map[string]int {
		t.Helper()
		var got map[string]map[int64]string
		missing := func() []string {
			var miss []string
			for _, k := range keys {
				for n := from; n <= to; n++ {
					if _, ok := got[k][n]; !ok {
						miss = append(miss, fmt.Sprintf("%s@%d", k, n))
					}
				}
			}
			return miss
		}
		deadline := SlotTime("", interval, 0, to+3)
		eventstest.Eventually(t, time.Until(deadline)+time.Second, func() bool {
			got = byWindow(from, to)
			return len(missing()) == 0 || time.Now().After(deadline)
		}, "%s: results read", what)
		if miss := missing(); len(miss) > 0 {
			t.Fatalf("%s: windows %d..%d (now %d) lack %d results: %v", what, from, to, now(), len(miss), miss)
		}
		per := map[string]int{}
		for _, ws := range got {
			for _, p := range ws {
				per[p]++
			}
		}
		return per
	}

	for _, name := range []string{"p1", "p2", "p3"} {
		start(name)
	}
	first := now() + 2
	per := coverage("three probers", first, first+5)
	for _, name := range []string{"p1", "p2", "p3"} {
		if share := float64(per[name]) / float64(endpoints*6); share < 0.15 {
			t.Errorf("with three probers %s ran %.0f%% of the checks: %v", name, share*100, per)
		}
	}

	// Kill p2 as a crash would: its connection drops and its record is left to expire.
	probers["p2"].nc.Close()
	probers["p2"].stop()
	killed := now()
	per = coverage("after p2 died", killed+2, killed+6)
	if per["p2"] != 0 || per["p1"] == 0 || per["p3"] == 0 {
		t.Errorf("after p2 died the checks ran on %v, want p1 and p3 only", per)
	}

	start("p4")
	added := now()
	per = coverage("after p4 joined", added, added+6)
	if per["p4"] == 0 {
		t.Errorf("p4 took no checks: %v", per)
	}
	per = coverage("with p1, p3 and p4", added+2, added+6)
	for _, name := range []string{"p1", "p3", "p4"} {
		if share := float64(per[name]) / float64(endpoints*5); share < 0.15 {
			t.Errorf("with three probers %s ran %.0f%% of the checks: %v", name, share*100, per)
		}
	}

	// Politeness, measured where the endpoint sees it: no endpoint was ever checked twice in
	// one interval, neither during the hand-overs nor after. Two workers running one window's
	// check would both do it at the same instant; half an interval leaves room for scheduling
	// delays on a busy machine.
	if d, ep := accepts.closestRuns(); d < (interval-jitter)/2 {
		t.Errorf("endpoint %s was checked twice within %s", ep, d)
	}
	accepts.mu.Lock()
	defer accepts.mu.Unlock()
	for ep, ts := range accepts.at {
		span := ts[len(ts)-1].Sub(ts[0])
		if max := int(span/(interval-jitter)) + 1; len(ts) > max {
			t.Errorf("endpoint %s was checked %d times in %s, more than once per interval", ep, len(ts), span)
		}
	}
}

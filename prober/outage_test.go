package prober

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// memberLog keeps the members each prober last logged.
type memberLog struct{ eventstest.Logs }

// all returns every list of members prober logged, in order.
func (l *memberLog) all(prober string) [][]string {
	var out [][]string
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var line struct {
			Prober  string   `json:"prober"`
			Message string   `json:"message"`
			Members []string `json:"members"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Prober == prober && line.Message == "prober members changed" {
			out = append(out, line.Members)
		}
	}
	return out
}

// members returns the members prober last logged, and how many times it logged them.
func (l *memberLog) members(prober string) ([]string, int) {
	all := l.all(prober)
	if len(all) == 0 {
		return nil, 0
	}
	return all[len(all)-1], len(all)
}

func TestTheMembershipWatchSurvivesAFullJetStreamOutage(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{Files: true})
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 300ms, timeout: 100ms}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:9"}]
`)
	var logs memberLog
	start := func(name string) {
		js, err := jetstream.New(eventstest.ConnectRetrying(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: name, Log: zerolog.New(&logs),
			Heartbeat: 100 * time.Millisecond, MemberTTL: 300 * time.Millisecond})
	}
	start("p1")
	start("p2")
	sees := func(want ...string) func() bool {
		return func() bool { m, _ := logs.members("p1"); return slices.Equal(m, want) }
	}
	eventstest.Eventually(t, 5*time.Second, sees("p1", "p2"), "p1 to see p2")
	_, before := logs.members("p1")

	// Every node of JetStream, and NATS with it, is gone for a second, three times the records'
	// TTL. p1 counts itself gone (its server does not answer) but not p2: it saw none of its own
	// records stored either, so p2's silence is no sign that p2 died.
	srv.Stop()
	time.Sleep(time.Second) // the outage itself
	srv.Restart(t)
	back := time.Now()

	// A worker that starts once JetStream is back is seen through p1's watch, which came back
	// too. The bound is the watch's recovery on a loaded machine, not BlindGrace: it notices its
	// consumer gone after two missed heartbeats (1 s), and each try to create another, half a
	// second apart, may wait 3 s while the restarted JetStream recovers its store.
	start("p3")
	eventstest.Eventually(t, 10*time.Second, sees("p1", "p2", "p3"), "p1 to see p3 through its watch, back after JetStream")
	t.Logf("p1 saw p3 %s after JetStream came back", time.Since(back).Round(time.Millisecond))
	for _, m := range logs.all("p1")[before:] {
		if !slices.Contains(m, "p2") {
			t.Errorf("p1 counted p2 gone (members %v) through an outage shorter than BlindGrace", m)
		}
	}
}

// TestWhileJetStreamCannotStoreEachCheckStaysWithOneWorker stops JetStream for three TTLs
// while NATS answers: no record is stored, none is delivered, each worker's own heartbeats are
// answered. Each check's windows keep being run, by one worker each, through the outage and after
// it: the workers neither count themselves alone and run every check of the region, nor leave a
// check to no one.
func TestWhileJetStreamCannotStoreEachCheckStaysWithOneWorker(t *testing.T) {
	const (
		interval  = 300 * time.Millisecond
		heartbeat = 100 * time.Millisecond
		memberTTL = time.Second // survives the stalls of a loaded machine
		endpoints = 8
	)
	srv := eventstest.StartWith(t, eventstest.Options{Files: true})
	checks := newCheckLog(t, eventstest.ConnectRetrying(t, srv.URL), "us-west", interval)
	var eps strings.Builder
	var keys []string
	for i := range endpoints {
		fmt.Fprintf(&eps, "{name: e%d, address: \"127.0.0.1:9\"}, ", i)
		keys = append(keys, fmt.Sprintf("shop/west/e%d", i))
	}
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, timeout: 100ms}
    pools:
      - name: west
        endpoints: [%s]
`, interval, eps.String()))
	var logs memberLog
	for _, name := range []string{"p1", "p2"} {
		js, err := jetstream.New(eventstest.ConnectRetrying(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: name, Log: zerolog.New(&logs),
			Heartbeat: heartbeat, MemberTTL: memberTTL, BatchWindow: -1})
	}
	for _, name := range []string{"p1", "p2"} {
		eventstest.Eventually(t, 5*time.Second, func() bool { m, _ := logs.members(name); return slices.Equal(m, []string{"p1", "p2"}) },
			"%s to see both", name)
	}
	checks.covered("before the outage", keys, Window(time.Now(), interval)+2, 2)

	// Three times the members' TTL without JetStream: every record the workers saw expires.
	srv.StopJetStream(t)
	first := Window(time.Now(), interval) + 1
	per := checks.covered("while JetStream cannot store", keys, first, int(3*memberTTL/interval))
	last := Window(time.Now(), interval) - 1
	// JetStream comes back with its node's restart (nats-server's EnableJetStream at run time
	// races with the clients' requests).
	srv.Stop()
	srv.Restart(t)
	if per["p1"] == 0 || per["p2"] == 0 {
		t.Errorf("while JetStream could not store the checks ran on %v, want p1 and p2 sharing them", per)
	}
	checks.settle()
	var twice, excused []string
	for _, k := range keys {
		for n := first; n <= last; n++ {
			if ps := checks.runs[k][n]; len(ps) > 1 {
				w := fmt.Sprintf("%s window %d by %v", k, n, ps)
				if checks.stalls.during(n, interval, memberTTL-heartbeat) {
					excused = append(excused, w)
				} else {
					twice = append(twice, w)
				}
			}
		}
	}
	if len(excused) > 0 {
		t.Logf("%d windows run twice after this process stalled for %v: %v", len(excused), checks.stalls.list(), excused)
	}
	if len(twice) > 0 {
		t.Errorf("while JetStream could not store, %d of %d windows were run by both workers, first %v", len(twice), endpoints*int(last-first+1), twice[:min(len(twice), 4)])
	}

	// Back, the workers still share the checks.
	back := Window(time.Now().Add(3*time.Second), interval) + 1
	per = checks.covered("after JetStream came back", keys, back, 4)
	if per["p1"] == 0 || per["p2"] == 0 {
		t.Errorf("after JetStream came back the checks ran on %v, want p1 and p2 sharing them", per)
	}
}

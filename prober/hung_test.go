package prober

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestAProberRestartedWhileAReplicaHangsChecksItsRegionSoon: the only prober of a region is
// restarted while one of three JetStream nodes hangs (leading neither the membership bucket's
// stream nor PROBES), the node that holds the membership consumer its last run left. It waited
// for its view of the region's members before it joined, and the view waited for the hung node
// to give up that consumer: its endpoints went unchecked for 2.0 to 2.9 s after its start (278
// ms with no node hung). Once the view is a heartbeat late it joins and checks as if alone in
// its region until the view is read: each restart checks every endpoint within 0.8 s.
func TestAProberRestartedWhileAReplicaHangsChecksItsRegionSoon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a JetStream cluster for several seconds")
	}
	const (
		restarted = 3
		endpoints = 4
		interval  = 300 * time.Millisecond
	)
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamProbers, events.StreamProbes)
	url := c.URLs[(hung+1)%len(c.Servers)]
	nc, js := eventstest.ConnectJS(t, url)
	members, err := js.Stream(context.Background(), events.StreamProbers)
	if err != nil {
		t.Fatal(err)
	}
	var eps strings.Builder
	for i := range endpoints {
		fmt.Fprintf(&eps, "{name: e%d, address: %q}, ", i, acceptAndDrop(t, "127.0.0.1:0").String())
	}
	cfg := testConfig(t, fmt.Sprintf(`
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, timeout: 200ms}
    pools:
      - name: west
        endpoints: [%s]
`, interval, eps.String()))

	// checked holds, per prober, when it first published a result of each endpoint.
	var mu sync.Mutex
	checked := map[string]map[string]time.Time{}
	sub, err := nc.Subscribe("detour.probe.us-west.>", func(m *nats.Msg) {
		e, err := events.Decode(m.Data)
		var r events.ProbeResult
		if err != nil || e.Payload(&r) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if checked[r.Prober] == nil {
			checked[r.Prober] = map[string]time.Time{}
		}
		if _, ok := checked[r.Prober][r.Endpoint]; !ok {
			checked[r.Prober][r.Endpoint] = time.Now()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// run starts a prober connected as user, as the role connects (its replies under its own
	// inbox, its consumers named for it).
	run := func(user string) func() {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		return startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: user,
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), BatchWindow: -1})
	}
	all := func(user string) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(checked[user]) == endpoints
	}
	// Probers whose membership consumers JetStream placed on the node about to hang run until
	// they checked every endpoint and stop, leaving their consumers there.
	users := c.LeftOn(t, hung, restarted, members, "prober", "", func(user string) func() {
		stop := run(user)
		eventstest.Eventually(t, 10*time.Second, func() bool { return all(user) }, "prober %s checking every endpoint with every node awake", user)
		return stop
	})
	c.Silence(hung)

	var slowest time.Duration
	for _, user := range users {
		mu.Lock()
		delete(checked, user)
		mu.Unlock()
		began := time.Now()
		stop := run(user)
		eventstest.Eventually(t, 15*time.Second, func() bool { return all(user) }, "prober %s checking every endpoint with n%d hung", user, hung)
		mu.Lock()
		var last time.Time
		for _, at := range checked[user] {
			if at.After(last) {
				last = at
			}
		}
		mu.Unlock()
		stop()
		took := last.Sub(began)
		t.Logf("%s: every endpoint checked %s after its start", user, took.Round(time.Millisecond))
		slowest = max(slowest, took)
	}
	if limit := 800 * time.Millisecond; slowest > limit {
		t.Errorf("the slowest of %d probers restarted with n%d hung checked every endpoint of its region %s after its start, want within %s",
			len(users), hung, slowest.Round(time.Millisecond), limit)
	}
}

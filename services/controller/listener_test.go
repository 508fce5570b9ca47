package controller

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// twoListeners is an edge, west, fronting apps shop and cart, each on its own listener and with
// its own check's fall; both rise 2.
func twoListeners(t *testing.T, shopFall, cartFall int) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {interval: 500ms, fall: %d, rise: 2, stale_after: 3s}
    pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]
  - name: cart
    fqdn: cart.demo.test
    check: {interval: 500ms, fall: %d, rise: 2, stale_after: 3s}
    pools: [{name: p, endpoints: [{address: "127.0.0.2:80"}]}]
edges:
  - {name: west, region: w, hostname: west.demo.test, address: 127.0.0.21, heartbeat: {interval: 1s, fall: 3},
     apps: [{app: shop, listen: "127.0.0.21:80", pool: p}, {app: cart, listen: "127.0.0.21:81", pool: p}]}
`, shopFall, cartFall)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEachListenerIsJudgedOnItsOwnAppsThresholdsWhateverOrderItsResultsArriveIn runs timelines of
// the checks of west's two listeners, one step per 500ms, each with a heartbeat. A step is a word
// of results in the order they arrive: 's' shop's listener, 'c' cart's, each followed by '+'
// (passed) or '-' (failed), every result from both regions r1 and r2. Every order of a case
// holds the same results, differently interleaved, and must give the same statuses (as in
// TestLiveness).
func TestEachListenerIsJudgedOnItsOwnAppsThresholdsWhateverOrderItsResultsArriveIn(t *testing.T) {
	tests := []struct {
		name               string
		shopFall, cartFall int
		orders             []string
		want, reason       string
	}{
		{name: "one listener failing beside a healthy one leaves the edge up", shopFall: 2, cartFall: 2,
			orders: []string{
				"s+c+ s+c+ s-c+ s-c+ s-c+ s-c+ s-c+ s-c+",
				"s+c+ s+c+ c+s- s-c+ c+s- s-c+ c+s- s-c+",
				"c+s+ c+s+ c+s- c+s- c+s- c+s- c+s- c+s-",
			},
			want: "UUUUUUUU", reason: "first heartbeat"},
		{name: "a listener recovering beside a failing one counts its own passes", shopFall: 2, cartFall: 2,
			orders: []string{
				"s+c+ s+c+ s-c- s-c- s-c+ s-c+ s-c+",
				"c+s+ s+c+ c-s- s-c- c+s- s-c+ c+s-",
			},
			want: "UUUDDUU", reason: "listener checks: 1 of 2 listeners answering (heartbeats arrive)"},
		{name: "every listener failing takes the edge down on the larger fall, the second app's", shopFall: 2, cartFall: 5,
			orders: []string{
				"s+c+ s+c+ s-c- s-c- s-c- s-c- s-c- s-c-",
				"c+s+ s+c+ c-s- s-c- c-s- s-c- c-s- s-c-",
			},
			want: "UUUUUUDD", reason: "listener checks: 2 of 2 listeners failing by their apps' quorum of regions (heartbeats arrive)"},
		{name: "every listener failing takes the edge down on the larger fall, the first app's", shopFall: 5, cartFall: 2,
			orders: []string{
				"s+c+ s+c+ s-c- s-c- s-c- s-c- s-c- s-c-",
				"c+s+ s+c+ c-s- s-c- c-s- s-c- c-s- s-c-",
			},
			want: "UUUUUUDD", reason: "listener checks: 2 of 2 listeners failing by their apps' quorum of regions (heartbeats arrive)"},
		{name: "one listener failing while the other has no verdict yet leaves the heartbeats to decide", shopFall: 2, cartFall: 2,
			orders: []string{
				"s- s- s- s-c+ s-c+ s-",
				"s- s- s- c+s- c+s- s-",
			},
			want: "UUUUUU", reason: "first heartbeat"},
		{name: "a listener whose first result comes at the end of its stale_after beside a failing one keeps the edge up", shopFall: 2, cartFall: 2,
			orders: []string{
				"s- s- s- s- s- s-c+ s-c+ s- s-",
				"s- s- s- s- s- c+s- c+s- s- s-",
			},
			want: "UUUUUUUUU", reason: "first heartbeat"},
		{name: "a listener never checked beside a failing one is down once its stale_after has passed since watching began", shopFall: 2, cartFall: 2,
			orders: []string{"s- s- s- s- s- s- s- s-"},
			want:   "UUUUUUDD", reason: "listener checks: 1 of 2 listeners failing by their apps' quorum of regions, 1 without recent results (heartbeats arrive)"},
		{name: "a listener whose results stop beside a failing one is down once they are stale", shopFall: 2, cartFall: 2,
			orders: []string{
				"s+c+ s+c+ s-c+ s-c+ s- s- s- s- s- s- s- s-",
				"c+s+ s+c+ c+s- s-c+ s- s- s- s- s- s- s- s-",
			},
			want: "UUUUUUUUUUDD", reason: "listener checks: 1 of 2 listeners failing by their apps' quorum of regions, 1 without recent results (heartbeats arrive)"},
	}
	apps := map[byte]string{'s': "shop", 'c': "cart"}
	for _, tt := range tests {
		for _, order := range tt.orders {
			t.Run(tt.name+"/"+order, func(t *testing.T) {
				start := time.Unix(1700000000, 0)
				l := NewLiveness(twoListeners(t, tt.shopFall, tt.cartFall), start)
				status, reason := events.StatusUnknown, ""
				var got strings.Builder
				for i, step := range strings.Fields(order) {
					now := start.Add(time.Duration(i+1) * 500 * time.Millisecond)
					l.Heartbeat("west", "hb", 0, now)
					for j := 0; j+1 < len(step); j += 2 {
						for _, region := range []string{"r1", "r2"} {
							l.Probe("west", apps[step[j]], region, step[j+1] == '+', 0, now)
						}
					}
					for _, ch := range l.Due(now) {
						status, reason = ch.To, ch.Reason
						l.Recorded("west", status)
					}
					got.WriteByte(statusLetter[status])
				}
				if got.String() != tt.want {
					t.Errorf("statuses %s, want %s", got.String(), tt.want)
				}
				if reason != tt.reason {
					t.Errorf("last change's reason %q, want %q", reason, tt.reason)
				}
			})
		}
	}
}

// TestOneAppsListenerFailingKeepsItsEdgeUpAndAllFailingTakeItDownWithinTheirFall: edge-west
// fronts shop (checked every 100ms, fall 3) and cart (every 300ms, fall 4). While shop's listener
// fails every check from both regions and cart's answers, the edge stays up in STATE (and so in
// DNS); once cart's fails too, the edge is down within cart's fall × interval.
func TestOneAppsListenerFailingKeepsItsEdgeUpAndAllFailingTakeItDownWithinTheirFall(t *testing.T) {
	ns := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 1s}
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
  - name: cart
    fqdn: cart.demo.test
    check: {interval: 300ms, fall: 4, rise: 2, stale_after: 2s}
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8082"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.12:8082"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080"}, {app: cart, listen: "127.0.0.21:8081"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	const cartInterval, cartFall = 300 * time.Millisecond, 4
	shopOK, cartOK := new(atomic.Bool), new(atomic.Bool)
	cartOK.Store(true)
	beat(t, ns, "edge-west", 100*time.Millisecond, nil)
	checkApp(t, ns, "shop", "edge-west", shopOK, true, 100*time.Millisecond, "us-west", "us-east")
	checkApp(t, ns, "cart", "edge-west", cartOK, true, cartInterval, "us-west", "us-east")
	startController(t, ns, cfg, "controller-1")
	west := events.EdgeStateSubject("edge-west")
	got := func() []events.Envelope { return history(t, ns, events.StreamState, west) }
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(got()) == "U" }, "edge-west up")

	// Well past shop's fall × interval, and cart's, the edge is still up: cart's listener answers.
	for hold := time.Now().Add(3*100*time.Millisecond + 2*cartFall*cartInterval); time.Now().Before(hold); {
		if h := types(got()); h != "U" {
			t.Fatalf("edge-west history %q while only shop's listener fails, want a single up", h)
		}
		time.Sleep(20 * time.Millisecond)
	}

	failed := time.Now()
	cartOK.Store(false)
	var h []events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool { h = got(); return types(h) == "UD" }, "edge-west down once every listener fails")
	if took, limit := h[1].Time.Sub(failed), cartFall*cartInterval+500*time.Millisecond; took > limit {
		t.Errorf("edge-west down %s after cart's listener failed too, want within %s (cart's fall × interval and a margin)", took, limit)
	}
	var tr events.Transition
	if err := h[1].Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if want := "listener checks: 2 of 2 listeners failing by their apps' quorum of regions (heartbeats arrive)"; tr.Reason != want {
		t.Errorf("edge-west went down for %q, want %q", tr.Reason, want)
	}
}

// TestAReconfiguredEdgeKeepsTheChecksOfTheListenersItKeeps: west's two listeners fail until it is
// down; a configuration without cart keeps it down on shop's checks, which it did not forget,
// and cart's next results count for nothing.
func TestAReconfiguredEdgeKeepsTheChecksOfTheListenersItKeeps(t *testing.T) {
	start := time.Unix(1700000000, 0)
	l := NewLiveness(twoListeners(t, 2, 2), start)
	status := events.StatusUnknown
	at := start
	for range 2 {
		at = at.Add(500 * time.Millisecond)
		l.Heartbeat("west", "hb", 0, at)
		for _, app := range []string{"shop", "cart"} {
			l.Probe("west", app, "r1", false, 0, at)
		}
		status = appendDue(t, l, at, status)
	}
	if status != events.StatusDown {
		t.Fatalf("status %q with both listeners failing, want down", status)
	}
	c := twoListeners(t, 2, 2)
	c.Edges[0].Apps = c.Edges[0].Apps[:1]
	l.Reconfigure(c, at)
	at = at.Add(500 * time.Millisecond)
	l.Heartbeat("west", "hb", 0, at)
	if l.Probe("west", "cart", "r1", true, 0, at) {
		t.Error("a check of cart's listener, no longer configured, was recorded")
	}
	if status = appendDue(t, l, at, status); status != events.StatusDown {
		t.Errorf("status %q after the reconfiguration, want down: shop's listener still fails", status)
	}
}

// TestAListenerIsJudgedWithItsAppsQuorumOfRegions: a listener is up when the share of the
// regions with a fresh verdict that see it answer meets its app's quorum, as an endpoint is
// (decide.Healthy): before, every listener took half, whatever its app's quorum said.
func TestAListenerIsJudgedWithItsAppsQuorumOfRegions(t *testing.T) {
	now := time.Unix(1000, 0)
	views := func(up, down int) map[string]listenerView {
		m := map[string]listenerView{}
		for i := range up {
			m[fmt.Sprint("up", i)] = listenerView{status: events.StatusUp, last: now}
		}
		for i := range down {
			m[fmt.Sprint("down", i)] = listenerView{status: events.StatusDown, last: now}
		}
		return m
	}
	for _, c := range []struct {
		name     string
		up, down int
		quorum   float64
		want     events.Status
	}{
		{"half, a tie", 1, 1, 0.5, events.StatusUp},
		{"half, one of three", 1, 2, 0.5, events.StatusDown},
		{"every region, one of two failing", 1, 1, 1, events.StatusDown},
		{"every region, all answering", 3, 0, 1, events.StatusUp},
		{"a third, one of three", 1, 2, 0.33, events.StatusUp},
		{"a third, none of three", 0, 3, 0.33, events.StatusDown},
		{"no verdict", 0, 0, 0.5, events.StatusUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &listener{regions: views(c.up, c.down), policy: listenerPolicy{fall: 3, rise: 2, quorum: c.quorum}}
			if got := l.judge(now); got != c.want {
				t.Errorf("%d regions up, %d down, quorum %.2f: %s, want %s", c.up, c.down, c.quorum, got, c.want)
			}
		})
	}
}

// TestAListenerWithoutRecentResultsGetsItsStaleAfterAgainWhenTheControllerHearsAgain: west's
// listeners have been up, then the controller heard nothing for 10s (cut off from NATS, or not
// scheduled). When it hears again, shop's listener fails at once and cart's first result comes
// 2.5s later: within cart's stale_after (3s) of hearing again, so the edge stays up; with no
// result of cart's, it is down once that has passed.
func TestAListenerWithoutRecentResultsGetsItsStaleAfterAgainWhenTheControllerHearsAgain(t *testing.T) {
	for _, how := range []string{"reconnected", "stalled"} {
		for _, cartAnswers := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/cart answers %t", how, cartAnswers), func(t *testing.T) {
				start := time.Unix(1700000000, 0)
				l := NewLiveness(twoListeners(t, 2, 2), start)
				status := events.StatusUnknown
				at := start
				for range 3 {
					at = at.Add(500 * time.Millisecond)
					l.Heartbeat("west", "hb", 0, at)
					for _, app := range []string{"shop", "cart"} {
						l.Probe("west", app, "r1", true, 0, at)
					}
					status = appendDue(t, l, at, status)
				}
				l.Awake(at)
				at = at.Add(10 * time.Second)
				switch how {
				case "reconnected":
					l.Grace(at)
				case "stalled":
					if deaf := l.Awake(at); deaf == 0 {
						t.Fatal("a gap of 10s was not taken for a stall")
					}
				}
				heard := at
				var got strings.Builder
				for i := range 8 {
					at = at.Add(500 * time.Millisecond)
					l.Heartbeat("west", "hb", 0, at)
					l.Probe("west", "shop", "r1", false, 0, at)
					if cartAnswers && i >= 4 {
						l.Probe("west", "cart", "r1", true, 0, at)
					}
					status = appendDue(t, l, at, status)
					got.WriteByte(statusLetter[status])
				}
				want := "UUUUUUUU"
				if !cartAnswers {
					want = "UUUUUUDD" // down at 3.5s: cart silent for longer than its stale_after since
				}
				if got.String() != want {
					t.Errorf("statuses every 500ms from %s on: %s, want %s", heard.Format(time.StampMilli), got.String(), want)
				}
			})
		}
	}
}

// TestAListenersCheckThatTwoProbersOfARegionRanInOneWindowCountsOnce: during a hand-over two
// probers of a region may both run a check in one window; the controller hears both results on
// the wire (JetStream's duplicate window does not filter core subscribers), and counts them once,
// as the deciders count an endpoint's, so that a fall of 2 is two windows, not one.
func TestAListenersCheckThatTwoProbersOfARegionRanInOneWindowCountsOnce(t *testing.T) {
	start := time.Unix(1700000000, 0)
	l := NewLiveness(twoListeners(t, 2, 2), start)
	status := events.StatusUnknown
	at := start
	for w := range int64(2) {
		at = at.Add(500 * time.Millisecond)
		l.Heartbeat("west", "hb", 0, at)
		for _, app := range []string{"shop", "cart"} {
			l.Probe("west", app, "r1", true, 3400000000+w, at)
		}
		status = appendDue(t, l, at, status)
	}
	if status != events.StatusUp {
		t.Fatalf("status %q with both listeners answering, want up", status)
	}
	at = at.Add(500 * time.Millisecond)
	l.Heartbeat("west", "hb", 0, at)
	for _, app := range []string{"shop", "cart"} {
		l.Probe("west", app, "r1", false, 3400000002, at) // two probers' runs of one window
		l.Probe("west", app, "r1", false, 3400000002, at)
	}
	if status = appendDue(t, l, at, status); status != events.StatusUp {
		t.Fatalf("status %q after one window's failures (fall 2), want up", status)
	}
	at = at.Add(500 * time.Millisecond)
	l.Heartbeat("west", "hb", 0, at)
	for _, app := range []string{"shop", "cart"} {
		l.Probe("west", app, "r1", false, 3400000003, at)
	}
	if status = appendDue(t, l, at, status); status != events.StatusDown {
		t.Fatalf("status %q after two windows' failures (fall 2), want down", status)
	}
}

package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/controller"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// beats records the heartbeats an edge sends: when each arrived, and the interval it announced.
type beats struct {
	mu  sync.Mutex
	at  []time.Time
	ivl []time.Duration
}

// count is how many heartbeats arrived so far.
func (b *beats) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.at)
}

// since returns the arrival times of the heartbeats after the first skip, from the first one
// announcing interval on.
func (b *beats) since(skip int, interval time.Duration) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := skip; i < len(b.ivl); i++ {
		if b.ivl[i] == interval {
			return append([]time.Time(nil), b.at[i:]...)
		}
	}
	return nil
}

// meanGap is the mean time between the first n heartbeats of ts.
func meanGap(ts []time.Time, n int) time.Duration {
	return ts[n-1].Sub(ts[0]) / time.Duration(n-1)
}

// TestAChangedHeartbeatIntervalTakesEffectOnTheRunningEdgeWithoutAFalseFailover runs the
// controller and an edge in process and changes the edge's heartbeat interval twice, each
// version reaching one of them a second before the other, as two processes following CONFIG
// may: from 500ms to 100ms (the controller first), then back to 500ms (the edge first). The
// edge sends at each new interval at once, and STATE never records it down.
func TestAChangedHeartbeatIntervalTakesEffectOnTheRunningEdgeWithoutAFalseFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("the change-overs take about 7 seconds")
	}
	ns := eventstest.Start(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	listen := freeAddr(t, "127.0.0.1")
	version := func(n uint64, interval time.Duration) *config.Config {
		c := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.1:9"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.1
    heartbeat: {interval: %s, fall: 3}
    apps: [{app: shop, listen: %q}]
`, interval, listen))
		c.Version = n
		return c
	}
	const slow, fast = 500 * time.Millisecond, 100 * time.Millisecond

	var b beats
	sub, err := ns.Conn.Subscribe(events.HeartbeatSubject("edge-west"), func(m *nats.Msg) {
		var hb events.Heartbeat
		e, err := events.Decode(m.Data)
		if err == nil {
			err = e.Payload(&hb)
		}
		if err != nil {
			t.Errorf("heartbeat %q: %v", m.Data, err)
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.at, b.ivl = append(b.at, time.Now()), append(b.ivl, time.Duration(hb.IntervalMS)*time.Millisecond)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := ns.Conn.Flush(); err != nil {
		t.Fatal(err)
	}

	toController, toEdge := make(chan *config.Config, 1), make(chan *config.Config, 1)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: ns.JS, Config: version(1, slow), Name: "controller-1", Log: log, Configs: toController})
	})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return proxy.Run(ctx, proxy.Options{JS: ns.JS, Config: version(1, slow), Edge: "edge-west", Log: log, Configs: toEdge})
	})
	transitions := func() string {
		st := ns.Stream(t, events.StreamState)
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(context.Background(), seq)
			if err != nil || m.Subject != events.EdgeStateSubject("edge-west") {
				continue
			}
			e, err := events.Decode(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			s += map[string]string{events.TypeEdgeUp: "U", events.TypeEdgeDown: "D"}[e.Type]
		}
		return s
	}
	var got string
	eventstest.Eventually(t, 5*time.Second, func() bool { got = transitions(); return got == "U" }, "edge-west recorded up once: %q", &got)

	// change sends v to first, and to second a second (two intervals of 500ms) later.
	change := func(v *config.Config, first, second chan<- *config.Config) {
		first <- v
		wait := time.NewTimer(time.Second)
		defer wait.Stop()
		<-wait.C
		second <- v
	}

	skip := b.count()
	change(version(2, fast), toController, toEdge)
	var ts []time.Time
	eventstest.Eventually(t, 5*time.Second, func() bool { ts = b.since(skip, fast); return len(ts) >= 15 },
		"15 heartbeats announcing %s", fast)
	if g := meanGap(ts, 15); g > 2*fast {
		t.Errorf("heartbeats after the change to %s came every %s", fast, g)
	}
	if got := transitions(); got != "U" {
		t.Fatalf("edge-west's transitions after its interval went from %s to %s: %q, want the first up alone", slow, fast, got)
	}

	skip = b.count()
	change(version(3, slow), toEdge, toController)
	eventstest.Eventually(t, 10*time.Second, func() bool { ts = b.since(skip, slow); return len(ts) >= 5 },
		"5 heartbeats announcing %s again", slow)
	if g := meanGap(ts, 5); g < slow*4/5 {
		t.Errorf("heartbeats after the change back to %s came every %s", slow, g)
	}
	if got := transitions(); got != "U" {
		t.Fatalf("edge-west's transitions after its interval went back to %s: %q, want the first up alone", slow, got)
	}
}

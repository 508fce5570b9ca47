package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestTheEdgesOwnHeartbeatDropsADeadSecondaryAndTakesItBack(t *testing.T) {
	for _, mode := range []string{"http", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			addr := freeAddr(t, "127.0.0.1")
			_, port, _ := net.SplitHostPort(addr)
			ps := newPeers("edge-west", dnsServer(t, map[string]string{"localhost.": "127.0.0.1"}), 20*time.Millisecond, zerolog.New(zerolog.NewTestWriter(t)))
			p := ps.get("localhost.", "127.0.0.1", mustAtoi(t, port), mode)
			if !p.alive.Load() {
				t.Fatal("a new secondary should be presumed alive until its heartbeats fail")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { ps.run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			eventstest.Eventually(t, 2*time.Second, func() bool { return !p.alive.Load() }, "nothing listening: the secondary to be dropped")

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(HeaderPing) == "edge-west" {
					w.Header().Set(HeaderEdge, "edge-east")
					w.WriteHeader(http.StatusNoContent)
				}
			}))
			srv.Listener = ln
			srv.Start()
			t.Cleanup(srv.Close)
			eventstest.Eventually(t, 2*time.Second, p.alive.Load, "the secondary answering again")
		})
	}
}

func TestAnHTTPListenerThatIsNotAnEdgeFailsThePing(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(plain.Close)
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	ps := newPeers("edge-west", dnsServer(t, map[string]string{"localhost.": "127.0.0.1"}), time.Second, zerolog.New(zerolog.NewTestWriter(t)))
	p := ps.get("localhost.", "127.0.0.1", mustAtoi(t, port), "http")
	err := ps.ping(context.Background(), p, p.dialAddr())
	if err == nil || err.Error() != "ping "+p.dialAddr()+": answered 200 OK without naming an edge" {
		t.Fatalf("ping of a plain web server: %v, want it refused", err)
	}
}

func TestAPeerHostnameResolvesThroughTheConfiguredServer(t *testing.T) {
	resolver := dnsServer(t, map[string]string{"edge-east.demo.test.": "127.0.0.23"})
	ps := newPeers("edge-west", resolver, time.Second, zerolog.New(zerolog.NewTestWriter(t)))
	addrs, ttl, err := ps.lookup(context.Background(), "edge-east.demo.test.")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "127.0.0.23" || ttl != 5*time.Second {
		t.Fatalf("lookup = %v, %s, %v; want [127.0.0.23] for the record's 5s TTL", addrs, ttl, err)
	}
	_, _, err = ps.lookup(context.Background(), "edge-north.demo.test.")
	if err == nil || err.Error() != "resolve edge-north.demo.test. at "+resolver+": no A or AAAA records" {
		t.Fatalf("lookup of an unknown name: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestAChangedHeartbeatIntervalChangesHowOftenTheEdgePingsItsSecondary runs edge-west, whose
// app's secondary is edge-east (a server answering pings in its place), at a heartbeat interval
// of 10s, and applies a version making it 50ms, then one making it 10s again: the pings of
// edge-east follow each version at once, without a restart.
func TestAChangedHeartbeatIntervalChangesHowOftenTheEdgePingsItsSecondary(t *testing.T) {
	var pings atomic.Int64
	east := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderPing) == "edge-west" {
			pings.Add(1)
			w.Header().Set(HeaderEdge, "edge-east")
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	east.Listener = ln
	east.Start()
	t.Cleanup(east.Close)
	westAddr := freeAddr(t, "127.0.0.1")
	version := func(n uint64, interval time.Duration) *config.Config {
		c := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.1:9"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.1:9"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.1
    heartbeat: {interval: %[1]s}
    apps: [{app: shop, listen: %[2]q, secondary: edge-east}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.1
    heartbeat: {interval: %[1]s}
    apps: [{app: shop, listen: %[3]q, secondary: edge-west}]
`, interval, westAddr, ln.Addr().String()))
		c.Version = n
		return c
	}
	ns := eventstest.Start(t)
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-east.demo.test.": "127.0.0.1", "edge-west.demo.test.": "127.0.0.1"})
	var applied atomic.Int64
	log := zerolog.New(zerolog.NewTestWriter(t)).Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "edge configuration applied" {
			applied.Add(1)
		}
	}))
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: version(1, 10*time.Second), Edge: "edge-west", Resolver: resolver,
			Log: log, Configs: configs})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return pings.Load() >= 1 }, "edge-east pinged at start")

	configs <- version(2, 50*time.Millisecond)
	from := pings.Load()
	// 10 pings take 0.5 s at 50ms; at 10s, 8 s would see one at most. The bound is for a loaded
	// machine (a CI run beside fuzzers missed 3 s).
	eventstest.Eventually(t, 8*time.Second, func() bool { return pings.Load()-from >= 10 },
		"10 pings of edge-east within 8s of the interval going from 10s to 50ms")

	configs <- version(3, 10*time.Second)
	eventstest.Eventually(t, 5*time.Second, func() bool { return applied.Load() == 2 }, "version 3 applied")
	// A ping already on its way may land; then none for the 10s to come.
	from = pings.Load()
	wait := time.NewTimer(time.Second)
	defer wait.Stop()
	<-wait.C
	if n := pings.Load() - from; n > 1 {
		t.Errorf("%d pings of edge-east in the second after the interval went back to 10s, want at most 1", n)
	}
}

// pingCounter is a server answering an edge's pings as edge name would, counting them.
func pingCounter(t *testing.T, name string) (addr string, pings *atomic.Int64) {
	t.Helper()
	pings = new(atomic.Int64)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderPing) != "" {
			pings.Add(1)
			w.Header().Set(HeaderEdge, name)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), pings
}

// TestAFormerSecondaryIsNoLongerPingedOnceNoRouteNamesIt runs edge-west, whose app's secondary
// is edge-east, and applies a version making it edge-north: edge-east, which no route names any
// more (it may be gone, its name no longer resolving), is pinged no more, where edge-west pinged
// and resolved every secondary it ever had until it restarted, logging a warning a second for
// each whose name stopped resolving.
func TestAFormerSecondaryIsNoLongerPingedOnceNoRouteNamesIt(t *testing.T) {
	east, eastPings := pingCounter(t, "edge-east")
	north, northPings := pingCounter(t, "edge-north")
	westAddr := freeAddr(t, "127.0.0.1")
	version := func(n uint64, secondary string) *config.Config {
		c := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.1:9"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.1:9"}]}
      - {name: north, region: us-north, endpoints: [{name: n1, address: "127.0.0.1:9"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.1
    heartbeat: {interval: 20ms}
    apps: [{app: shop, listen: %q, secondary: %s}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.1
    apps: [{app: shop, listen: %q}]
  - name: edge-north
    region: us-north
    hostname: edge-north.demo.test
    address: 127.0.0.1
    apps: [{app: shop, listen: %q}]
`, westAddr, secondary, east, north))
		c.Version = n
		return c
	}
	ns := eventstest.Start(t)
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-east.demo.test.": "127.0.0.1", "edge-north.demo.test.": "127.0.0.1", "edge-west.demo.test.": "127.0.0.1"})
	var applied atomic.Int64
	log := zerolog.New(zerolog.NewTestWriter(t)).Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "edge configuration applied" {
			applied.Add(1)
		}
	}))
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: version(1, "edge-east"), Edge: "edge-west", Resolver: resolver,
			Log: log, Configs: configs})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return eastPings.Load() >= 1 }, "edge-east pinged at start")

	configs <- version(2, "edge-north")
	eventstest.Eventually(t, 5*time.Second, func() bool { return applied.Load() == 1 }, "version 2 applied")
	// A ping of edge-east already on its way may land; then none while edge-north gets 10.
	from, northFrom := eastPings.Load(), northPings.Load()
	eventstest.Eventually(t, 5*time.Second, func() bool { return northPings.Load()-northFrom >= 10 }, "10 pings of edge-north")
	if n := eastPings.Load() - from; n > 1 {
		t.Errorf("edge-east pinged %d times while edge-north was pinged 10, want at most once: no route names it any more", n)
	}
}

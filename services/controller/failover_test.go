package controller_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// appServer is a backend that can be killed and brought back on the same address.
type appServer struct {
	name, addr string
	srv        *http.Server
	done       chan struct{}
}

func startApp(t *testing.T, name, addr string) *appServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	a := &appServer{name: name, addr: ln.Addr().String(), done: make(chan struct{})}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Backend", name)
		_, _ = w.Write([]byte("hello from " + name))
	})}
	go func() { _ = a.srv.Serve(ln); close(a.done) }()
	t.Cleanup(a.kill)
	return a
}

// kill closes the listener and every connection at once, as a crashed process would.
func (a *appServer) kill() {
	_ = a.srv.Close()
	<-a.done
}

func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// run starts a role and stops it when the test ends (or when the returned cancel is called),
// failing the test if it returns an error.
func run(t *testing.T, name string, f func(ctx context.Context) error) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// cnameOf asks the DNS server for the fqdn and returns the CNAME target it answers.
func cnameOf(server, fqdn string) string {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, dns.TypeA)
	resp, err := dns.Exchange(m, server)
	if err != nil {
		return ""
	}
	for _, rr := range resp.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			return c.Target
		}
	}
	return ""
}

// load sends GETs at a fixed rate to whichever edge DNS names, at most 64 at a time, and
// counts the outcomes per phase.
type load struct {
	phase    atomic.Value // string
	mu       sync.Mutex
	ok, fail map[string]int
	backends map[string]map[string]int
	errs     []string
	shed     atomic.Int64
}

func (l *load) record(phase, backend string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fail[phase]++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, phase+": "+err.Error())
		}
		return
	}
	l.ok[phase]++
	l.backends[phase][backend]++
}

func (l *load) served(phase, backend string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.backends[phase][backend]
}

func (l *load) start(t *testing.T, rate int, target func() string) {
	l.ok, l.fail, l.backends = map[string]int{}, map[string]int{}, map[string]map[string]int{}
	for _, p := range []string{"steady", "app-down", "app-back", "edge-down"} {
		l.backends[p] = map[string]int{}
	}
	l.phase.Store("steady")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	stop := run(t, "load", func(ctx context.Context) error {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				l.shed.Add(1)
				continue
			}
			phase, addr := l.phase.Load().(string), target()
			wg.Go(func() {
				defer func() { <-sem }()
				resp, err := client.Get("http://" + addr + "/")
				if err == nil {
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				backend := ""
				if resp != nil {
					backend = resp.Header.Get("Backend")
				}
				l.record(phase, backend, err)
			})
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
}

// TestEdgesFailOverAroundADeadAppAndADeadEdge runs two edges, two backends, a prober, the
// decider, the controller and the DNS server in process, with 200 requests/s throughout:
// the west backend dies and comes back without a single failed GET, then the ingress edge dies
// and DNS moves the app's CNAME to its sibling within fall × heartbeat interval + 1s.
func TestEdgesFailOverAroundADeadAppAndADeadEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("the failover scenario takes about 10 seconds")
	}
	ns := eventstest.Start(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	west := startApp(t, "west", "127.0.0.1:0")
	east := startApp(t, "east", "127.0.0.1:0")
	westEdge, eastEdge := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.22")
	const interval, fall = 200 * time.Millisecond, 3
	cfg, err := config.Parse("failover.yaml", fmt.Appendf(nil, `
zones: [{name: demo.test, negative_ttl: 1}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 1
    ingress: [edge-west, edge-east]
    primary_edge: edge-west
    check: {type: http, path: /, interval: 100ms, fall: 2, rise: 2}
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: %q}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: %q}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: %s, fall: %d}
    apps: [{app: shop, listen: %q, secondary: edge-east}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.22
    heartbeat: {interval: %s, fall: %d}
    apps: [{app: shop, listen: %q, secondary: edge-west}]
`, west.addr, east.addr, interval, fall, westEdge, interval, fall, eastEdge))
	if err != nil {
		t.Fatal(err)
	}

	dnsServer, err := dnsupdater.New(dnsupdater.Options{JS: ns.JS, Config: cfg, Addr: "127.0.0.1:0", Name: "dns-1", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "dns", dnsServer.Run)
	run(t, "decider", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: ns.JS, Config: cfg, Name: "decider-1", Log: log})
	})
	run(t, "prober", func(ctx context.Context) error {
		return prober.Run(ctx, prober.Options{JS: ns.JS, Config: cfg, Region: "us-west", Name: "p1", Log: log})
	})
	run(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: log})
	})
	edges := map[string]context.CancelFunc{}
	for _, name := range []string{"edge-west", "edge-east"} {
		edges[name] = run(t, name, func(ctx context.Context) error {
			return proxy.Run(ctx, proxy.Options{JS: ns.JS, Config: cfg, Edge: name, Resolver: dnsServer.Addr(), Log: log})
		})
	}

	// Clients follow DNS: shop.demo.test is a CNAME to an edge; its listener is the target.
	listeners := map[string]string{"edge-west.demo.test.": westEdge, "edge-east.demo.test.": eastEdge}
	var current atomic.Value
	current.Store(westEdge)
	eventstest.Eventually(t, 10*time.Second, func() bool { return cnameOf(dnsServer.Addr(), "shop.demo.test.") == "edge-west.demo.test." },
		"DNS to answer shop.demo.test with the ingress edge edge-west")
	run(t, "client resolver", func(ctx context.Context) error {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if addr, ok := listeners[cnameOf(dnsServer.Addr(), "shop.demo.test.")]; ok {
				current.Store(addr)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	eventstest.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + westEdge + "/")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.Header.Get("Backend") == "west"
	}, "edge-west to serve from the west backend")

	var l load
	l.start(t, 200, func() string { return current.Load().(string) })
	eventstest.Eventually(t, 5*time.Second, func() bool { return l.served("steady", "west") >= 100 }, "100 requests served by west")

	l.phase.Store("app-down")
	west.kill()
	eventstest.Eventually(t, 10*time.Second, func() bool { return l.served("app-down", "east") >= 200 }, "200 requests served by east through the secondary edge")

	l.phase.Store("app-back")
	west = startApp(t, "west", west.addr)
	eventstest.Eventually(t, 10*time.Second, func() bool { return l.served("app-back", "west") >= 200 }, "200 requests served by west again")

	// Requests labelled app-back are all answered once 20 of the next phase are.
	l.phase.Store("edge-down")
	eventstest.Eventually(t, 5*time.Second, func() bool { return l.served("edge-down", "west") >= 20 }, "the app-back requests to finish")
	killed := time.Now()
	edges["edge-west"]()
	eventstest.Eventually(t, 10*time.Second, func() bool { return cnameOf(dnsServer.Addr(), "shop.demo.test.") == "edge-east.demo.test." },
		"DNS to move shop.demo.test to edge-east")
	moved := time.Since(killed)
	limit := fall*interval + time.Second
	if moved > limit {
		t.Errorf("DNS moved to edge-east %s after edge-west died, want within fall × interval + 1s = %s", moved, limit)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return l.served("edge-down", "east") >= 100 }, "clients to reach east through edge-east")
	// Clients that still held edge-west's address until DNS moved could not connect; that is
	// the DNS failover's cost, logged below, not a proxy failure.

	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("requests ok/failed per phase: steady %d/%d, app-down %d/%d, app-back %d/%d, edge-down %d/%d (shed %d); DNS moved after %s",
		l.ok["steady"], l.fail["steady"], l.ok["app-down"], l.fail["app-down"], l.ok["app-back"], l.fail["app-back"],
		l.ok["edge-down"], l.fail["edge-down"], l.shed.Load(), moved.Round(time.Millisecond))
	for _, p := range []string{"steady", "app-down", "app-back"} {
		if l.fail[p] != 0 {
			t.Errorf("%d GETs failed in phase %s, want none: %s", l.fail[p], p, strings.Join(l.errs, "; "))
		}
	}
	if l.shed.Load() != 0 {
		t.Errorf("%d requests were not sent: 64 were already in flight", l.shed.Load())
	}
}

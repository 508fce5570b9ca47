package proxy

import (
	"bufio"
	"strings"

	"context"
	"fmt"
	"github.com/detourdev/detour/events"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/rs/zerolog"
)

// liveDoc configures edge-west with the given edge apps (YAML flow items).
func liveDoc(t *testing.T, shop, blog, apps string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("live.yaml", fmt.Appendf(nil, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: s1, address: %q}]}]
  - name: blog
    fqdn: blog.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: b1, address: %q}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 100ms}
    apps: [%s]
`, shop, blog, apps))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func liveGet(addr string) (int, string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestAnEdgeFollowsItsConfigurationWithoutDroppingRequestsOnUnchangedListeners(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			arrived <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "shop")
	}))
	defer slow.Close()
	blog := backend(t, "blog")
	shopAddr, blogAddr, movedAddr := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21")
	shopBackend, blogBackend := slow.Listener.Addr().String(), blog.Listener.Addr().String()
	shopOnly := fmt.Sprintf("{app: shop, listen: %q}", shopAddr)
	cfg := liveDoc(t, shopBackend, blogBackend, shopOnly)

	ns := eventstest.Start(t)
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21"})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: "edge-west", Resolver: resolver, Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		code, _, err := liveGet(shopAddr)
		return err == nil && code == 200
	}, "shop served on %s", shopAddr)

	// A request to shop is in flight while blog is added.
	inFlight := make(chan error, 1)
	go func() {
		code, body, err := liveGet(shopAddr + "/?slow=1")
		if err == nil && (code != 200 || body != "shop") {
			err = fmt.Errorf("answered %d %q", code, body)
		}
		inFlight <- err
	}()
	<-arrived
	configs <- liveDoc(t, shopBackend, blogBackend, shopOnly+fmt.Sprintf(", {app: blog, listen: %q}", blogAddr))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		code, body, err := liveGet(blogAddr)
		return err == nil && code == 200 && body == "blog GET "
	}, "blog served on %s after it was added", blogAddr)
	close(release)
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight on the unchanged shop listener: %v", err)
	}

	// shop moves to another address and blog goes.
	configs <- liveDoc(t, shopBackend, blogBackend, fmt.Sprintf("{app: shop, listen: %q}", movedAddr))
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, _, err := liveGet(movedAddr)
		return err == nil && code == 200
	}, "shop served on %s after it moved", movedAddr)
	for _, addr := range []string{shopAddr, blogAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after its listener was removed", addr)
		}
	}
}

func TestAVersionWhoseListenerCannotBindIsRecordedAsRejectedAndTheRestStillServes(t *testing.T) {
	blog := backend(t, "blog")
	shop := backend(t, "shop")
	shopAddr := freeAddr(t, "127.0.0.21")
	taken, err := net.Listen("tcp", "127.0.0.21:0") // another program holds the address blog asks for
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	shopOnly := fmt.Sprintf("{app: shop, listen: %q}", shopAddr)
	cfg := liveDoc(t, shop.Listener.Addr().String(), blog.Listener.Addr().String(), shopOnly)

	ns := eventstest.Start(t)
	rejected, err := ns.Conn.SubscribeSync(config.RejectedSubject("edge", "edge-west"))
	if err != nil {
		t.Fatal(err)
	}
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21"})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: "edge-west", Resolver: resolver, Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		code, _, err := liveGet(shopAddr)
		return err == nil && code == 200
	}, "shop served on %s", shopAddr)

	next := liveDoc(t, shop.Listener.Addr().String(), blog.Listener.Addr().String(),
		shopOnly+fmt.Sprintf(", {app: blog, listen: %q}", taken.Addr().String()))
	next.Version = 7
	configs <- next
	m, err := rejected.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no rejection recorded for version 7: %v", err)
	}
	var r config.Rejected
	e, err := events.Decode(m.Data)
	if err == nil {
		err = e.Payload(&r)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 7 || r.Role != "edge/edge-west" || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "edges[edge-west].apps[1].listen") {
		t.Errorf("rejection = %+v, want version 7 of edge/edge-west naming edges[edge-west].apps[1].listen", r)
	}
	if code, body, err := liveGet(shopAddr); err != nil || code != 200 || body != "shop GET " {
		t.Errorf("shop after the rejected version: %d %q %v, want it served as before", code, body, err)
	}
}

// TestAnEdgesHeartbeatNamesItsAppsFirstAndWhenTheyChange: the first heartbeat lists the apps
// whose listeners are bound, the next ones do not repeat them, and the first after the apps
// changed lists them again.
func TestAnEdgesHeartbeatNamesItsAppsFirstAndWhenTheyChange(t *testing.T) {
	blog := backend(t, "blog")
	shopAddr, blogAddr := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21")
	shopOnly := fmt.Sprintf("{app: shop, listen: %q}", shopAddr)
	backendAddr := blog.Listener.Addr().String()
	ns := eventstest.Start(t)
	sub, err := ns.Conn.SubscribeSync(events.HeartbeatSubject("edge-west"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	next := func() events.Heartbeat {
		t.Helper()
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no heartbeat: %v", err)
		}
		env, err := events.Decode(m.Data)
		var hb events.Heartbeat
		if err == nil {
			err = env.Payload(&hb)
		}
		if err != nil {
			t.Fatalf("heartbeat %q: %v", m.Data, err)
		}
		return hb
	}
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21"})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: liveDoc(t, backendAddr, backendAddr, shopOnly), Edge: "edge-west", Resolver: resolver,
			Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	if hb := next(); hb.Seq != 1 || !slices.Equal(hb.Apps, []string{"shop"}) {
		t.Fatalf("first heartbeat: seq %d, apps %q; want seq 1 naming shop", hb.Seq, hb.Apps)
	}
	for range 2 {
		if hb := next(); hb.Apps != nil {
			t.Fatalf("heartbeat %d names %q again; want no apps while they are unchanged", hb.Seq, hb.Apps)
		}
	}
	configs <- liveDoc(t, backendAddr, backendAddr, shopOnly+fmt.Sprintf(", {app: blog, listen: %q}", blogAddr))
	deadline := time.Now().Add(5 * time.Second)
	for {
		hb := next()
		if hb.Apps != nil {
			if !slices.Equal(hb.Apps, []string{"shop", "blog"}) {
				t.Fatalf("heartbeat %d after blog was added names %q, want shop and blog", hb.Seq, hb.Apps)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat names the apps within 5s of blog's addition")
		}
	}
	if hb := next(); hb.Apps != nil {
		t.Errorf("heartbeat %d names %q again; want no apps while they are unchanged", hb.Seq, hb.Apps)
	}
}

// TestAnUpgradedConnectionOfARemovedListenerIsClosed: a WebSocket (or any upgraded) connection
// relayed by an app's listener ends with the listener when a version removes the app, as its
// requests in flight do after shutdownGrace and as a TCP listener's connections do, on both
// sides: the client's and the instance's.
func TestAnUpgradedConnectionOfARemovedListenerIsClosed(t *testing.T) {
	instanceSaw := make(chan error, 1)
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = io.Copy(io.Discard, rw)
		instanceSaw <- err
	}))
	defer ws.Close()
	blog := backend(t, "blog")
	shopAddr, blogAddr := freeAddr(t, "127.0.0.21"), freeAddr(t, "127.0.0.21")
	both := fmt.Sprintf("{app: shop, listen: %q}, {app: blog, listen: %q}", shopAddr, blogAddr)
	cfg := liveDoc(t, ws.Listener.Addr().String(), blog.Listener.Addr().String(), both)
	ns := eventstest.Start(t)
	configs := make(chan *config.Config)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21"})
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: "edge-west", Resolver: resolver, Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	var conn net.Conn
	eventstest.Eventually(t, 5*time.Second, func() bool {
		var err error
		conn, err = net.Dial("tcp", shopAddr)
		return err == nil
	}, "shop served on %s", shopAddr)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.WriteString(conn, "GET /socket HTTP/1.1\r\nHost: shop.demo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v; want 101", resp, err)
	}

	configs <- liveDoc(t, ws.Listener.Addr().String(), blog.Listener.Addr().String(), fmt.Sprintf("{app: blog, listen: %q}", blogAddr))
	start := time.Now()
	if n, err := br.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the client's upgraded connection to the removed listener: read %d bytes, %v after %v; want its end", n, err, time.Since(start).Round(time.Millisecond))
	}
	select {
	case err := <-instanceSaw:
		if err != nil {
			t.Errorf("the instance's side of the tunnel ended with %v, want its end", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the instance's side of the tunnel still open 10 s after the listener was removed")
	}
}

// A listener a new version reopens (its entry changed) serves its first request on the app's
// last route, not on the configuration's alone, which knows nothing of the instances the decider
// marked down: here s1, down, must not take it, as it took the requests that came as soon as the
// listener accepted them until the rest of the version was applied.
func TestAReopenedListenerServesItsFirstRequestOnTheAppsLastRoute(t *testing.T) {
	s1, s2 := backend(t, "s1"), backend(t, "s2")
	shopAddr := freeAddr(t, "127.0.0.21")
	version := func(n uint64, extra string) *config.Config {
		c := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: s1, address: %q}, {name: s2, address: %q}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: %q%s}]
`, s1.Listener.Addr().String(), s2.Listener.Addr().String(), shopAddr, extra))
		c.Version = n
		return c
	}
	cfg := version(1, "")
	ns := eventstest.Start(t)
	configs := make(chan *config.Config)
	first := make(chan string, 1)
	log := zerolog.New(zerolog.NewTestWriter(t)).Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "edge listener opened" {
			// The listener accepts from here on: a request now is one a client could send.
			_, body, err := liveGet(shopAddr)
			if err != nil {
				body = err.Error()
			}
			first <- body
		}
	}))
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: "edge-west", Resolver: dnsServer(t, nil), Log: log, Configs: configs})
	})
	view := state.NewView()
	down, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := view.Apply(events.EndpointStateSubject("shop", "west", "s1"), 1, down); err != nil {
		t.Fatal(err)
	}
	table, err := route.Compute(cfg, view, "edge-west", "")
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.New(events.TypeRouteComputed, "test", time.Now(), events.EdgeRoute{Edge: "edge-west", Route: table.Apps[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.AppRouteSubject("edge-west", "shop"), env); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for range 4 {
			if _, body, err := liveGet(shopAddr); err != nil || body != "s2 GET " {
				return false
			}
		}
		return true
	}, "shop's requests to go to s2 alone, s1 being down")

	configs <- version(2, ", passive_fall: 5")
	select {
	case body := <-first:
		if body != "s2 GET " {
			t.Errorf("the reopened listener's first request was answered %q, want %q: s1 is down", body, "s2 GET ")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shop's listener was not reopened within 10s")
	}
}

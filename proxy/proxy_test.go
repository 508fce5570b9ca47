package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
)

// freeAddr returns a loopback ip:port nothing listens on right now.
func freeAddr(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// backend is an HTTP server that names itself in every answer.
func backend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Backend", name)
		w.Header().Set("Got-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("Got-XFH", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("Got-XFP", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("Got-Forwarded", r.Header.Get("Forwarded"))
		w.Header().Set("Got-Hop", r.Header.Get(HeaderForwardedBy))
		w.Header().Set("Got-Host", r.Host)
		body, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s %s", name, r.Method, body)
	}))
	t.Cleanup(s.Close)
	return s
}

type cluster struct {
	t       testing.TB
	ns      *eventstest.Server
	cfg     *config.Config
	view    *state.View
	seq     uint64
	west    string // listen address of edge-west's app
	east    string
	cancels map[string]context.CancelFunc
	done    map[string]chan error
	metrics *metrics.Metrics
	dataDir string // the edges' route table snapshots; "" keeps none
	// logs holds what every edge logged.
	logs lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// twoEdges configures edge-west (pool west) and edge-east (pool east), each the other's
// secondary for app shop.
func twoEdges(t testing.TB, west, east []string, mode, resolver string) *cluster {
	t.Helper()
	return twoEdgesWith(t, west, east, mode, resolver, "")
}

// twoEdgesWith is twoEdges with extra YAML fields (", key: value…") for the west edge app. With
// no resolver, the edges resolve each other through a loopback DNS server, never the host's.
func twoEdgesWith(t testing.TB, west, east []string, mode, resolver, westExtra string) *cluster {
	t.Helper()
	if resolver == "" {
		resolver = dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21", "edge-east.demo.test.": "127.0.0.22"})
	}
	return twoEdgesOn(t, eventstest.Start(t), "", west, east, mode, resolver, westExtra)
}

// twoEdgesOn is twoEdgesWith on the JetStream server ns, with the edges' snapshots in dataDir.
func twoEdgesOn(t testing.TB, ns *eventstest.Server, dataDir string, west, east []string, mode, resolver, westExtra string) *cluster {
	t.Helper()
	return twoEdgesAddressed(t, ns, dataDir, west, east, mode, resolver, westExtra, [2]string{"127.0.0.21", "127.0.0.22"})
}

// twoEdgesAddressed is twoEdgesOn with the edges' configured addresses (edges[].address) west's
// and east's of address, which need not be where their listeners or connections are.
func twoEdgesAddressed(t testing.TB, ns *eventstest.Server, dataDir string, west, east []string, mode, resolver, westExtra string, address [2]string) *cluster {
	t.Helper()
	c := &cluster{t: t, ns: ns, view: state.NewView(), dataDir: dataDir,
		west: freeAddr(t, "127.0.0.21"), east: freeAddr(t, "127.0.0.22"),
		cancels: map[string]context.CancelFunc{}, done: map[string]chan error{}, metrics: metrics.New()}
	eps := func(addrs []string) string {
		var b strings.Builder
		for i, a := range addrs {
			fmt.Fprintf(&b, "\n          - {name: i%d, address: %q}", i, a)
		}
		return b.String()
	}
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - name: west
        region: us-west
        endpoints:%s
      - name: east
        region: us-east
        endpoints:%s
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: %s
    heartbeat: {interval: 100ms}
    apps: [{app: shop, listen: %q, mode: %s, secondary: edge-east, retry_methods: [PUT]%s}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: %s
    heartbeat: {interval: 100ms}
    apps: [{app: shop, listen: %q, mode: %s, secondary: edge-west}]
`, eps(west), eps(east), address[0], c.west, mode, westExtra, address[1], c.east, mode)
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c.cfg = cfg
	c.start("edge-west", resolver)
	c.start("edge-east", resolver)
	return c
}

func (c *cluster) start(edge, resolver string) {
	t := c.t
	if resolver == "" { // never the host's resolver: tests stay on loopback
		resolver = dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.21", "edge-east.demo.test.": "127.0.0.22"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &c.logs))
	if _, fuzzing := t.(*testing.F); fuzzing {
		log = zerolog.Nop() // a fuzz target may not log through F
	}
	go func() {
		done <- Run(ctx, Options{JS: c.ns.JS, Config: c.cfg, Edge: edge, Resolver: resolver, DataDir: c.dataDir, Log: log, Metrics: c.metrics})
	}()
	c.cancels[edge], c.done[edge] = cancel, done
	t.Cleanup(func() { c.stop(edge) })
	addr := c.cfg.Edge(edge).Apps[0].Listen
	eventstest.Eventually(t, 5*time.Second, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
		}
		return err == nil
	}, "edge %s listening on %s", edge, addr)
}

// stop stops an edge and checks that Run returned nil.
func (c *cluster) stop(edge string) {
	cancel, ok := c.cancels[edge]
	if !ok {
		return
	}
	delete(c.cancels, edge)
	cancel()
	select {
	case err := <-c.done[edge]:
		if err != nil {
			c.t.Errorf("edge %s: run returned %v, want nil", edge, err)
		}
	case <-time.After(10 * time.Second):
		c.t.Errorf("edge %s did not stop within 10s", edge)
	}
}

// mark records a state event and publishes every edge's new route table, as the controller does.
func (c *cluster) mark(subject, typ string) {
	t := c.t
	c.seq++
	e, err := events.New(typ, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.view.Apply(subject, c.seq, e); err != nil {
		t.Fatal(err)
	}
	c.publish()
}

func (c *cluster) publish() {
	t := c.t
	for _, edge := range c.cfg.Edges {
		table, err := route.Compute(c.cfg, c.view, edge.Name, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range table.Apps {
			env, err := events.New(events.TypeRouteComputed, "test", time.Now(), events.EdgeRoute{Edge: edge.Name, Route: r})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := events.Publish(context.Background(), c.ns.JS, events.AppRouteSubject(edge.Name, r.App), env); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func backendOf(t *testing.T, url string) string {
	resp, _ := get(t, url)
	return resp.Header.Get("Backend")
}

func TestAnEdgeBalancesOverItsInstancesAndSkipsOnesMarkedDown(t *testing.T) {
	w1, w2, e1 := backend(t, "w1"), backend(t, "w2"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String(), w2.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	seen := map[string]int{}
	for range 20 {
		seen[backendOf(t, "http://"+c.west+"/")]++
	}
	if seen["w1"] != 10 || seen["w2"] != 10 {
		t.Fatalf("20 requests went to %v, want 10 to each local instance", seen)
	}
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for range 4 {
			if backendOf(t, "http://"+c.west+"/") != "w2" {
				return false
			}
		}
		return true
	}, "requests to avoid the instance marked down")
}

func TestAGetToADeadInstanceIsRetriedOnTheNextOneWithoutAnError(t *testing.T) {
	w1, w2, e1 := backend(t, "w1"), backend(t, "w2"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String(), w2.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	w1.Close()
	for i := range 10 {
		resp, body := get(t, "http://"+c.west+"/")
		if resp.StatusCode != 200 || resp.Header.Get("Backend") != "w2" {
			t.Fatalf("request %d: %d from %q (%s), want 200 from w2", i, resp.StatusCode, resp.Header.Get("Backend"), body)
		}
	}
}

func TestAPostToADeadInstanceIsRetriedAtOnceBecauseNothingWasSent(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdgesWith(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "", ", timeouts: {connect: 10s}")
	w1.Close()
	start := time.Now()
	resp, err := http.Post("http://"+c.west+"/order", "text/plain", strings.NewReader("two apples"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "e1 POST two apples" {
		t.Fatalf("POST answered %d %q, want 200 %q: the refused connection carried nothing, so the secondary may take it", resp.StatusCode, body, "e1 POST two apples")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("POST answered after %s, want at once: a refused connection is retried without waiting for the connect timeout (10s)", took)
	}
}

func TestWhenTheLocalPoolIsDownRequestsGoToTheSecondaryEdge(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "west's requests to reach east's instance")

	req, _ := http.NewRequest("GET", "http://"+c.west+"/cart", nil)
	req.Host = "shop.demo.test"
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim, not to be trusted
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	checks := map[string]string{
		"Got-Host":      "shop.demo.test",
		"Got-Hop":       "edge-west",
		"Got-XFF":       "127.0.0.1, 127.0.0.21",
		"Got-XFH":       "shop.demo.test",
		"Got-XFP":       "http",
		"Got-Forwarded": "for=127.0.0.1;host=shop.demo.test;proto=http, for=127.0.0.21;host=shop.demo.test;proto=http",
	}
	for h, want := range checks {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("backend saw %s %q, want %q", strings.TrimPrefix(h, "Got-"), got, want)
		}
	}
}

func TestARequestAlreadyForwardedIsNeverForwardedAgain(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	w1.Close()
	e1.Close()
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	c.mark(events.EndpointStateSubject("shop", "east", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		resp, body := get(t, "http://"+c.west+"/")
		return resp.StatusCode == http.StatusBadGateway && body == "Bad Gateway\n" &&
			strings.Contains(c.logs.String(), errLoop.Error())
	}, "a 502 from edge-east, which logs the loop")
}

// Two edges whose configured addresses are not where their connections come from (a public
// address behind a NAT, here one of TEST-NET-1 that no host has) do not know each other's
// requests for forwarded ones. With both pools down, each forwards to the other: the request
// must come back to the first edge once at most and be answered 502, not bounce between them
// until one runs out of connections.
func TestARequestThatComesBackToTheEdgeThatForwardedItIsNotForwardedAgain(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdgesAddressed(t, eventstest.Start(t), "", []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()},
		"http", "", "", [2]string{"192.0.2.21", "192.0.2.22"})
	w1.Close()
	e1.Close()
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	c.mark(events.EndpointStateSubject("shop", "east", "i0"), events.TypeEndpointDown)
	for _, tc := range []struct{ name, raw, method string }{
		{name: "a plain GET (lean path)", raw: "GET / HTTP/1.1\r\n" + host + "\r\n", method: "GET"},
		{name: "a GET with an empty body (fast path)", raw: "GET / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", method: "GET"},
		{name: "a POST with a body (ReverseProxy path)", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", method: "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eventstest.Eventually(t, 5*time.Second, func() bool {
				conn, err := net.Dial("tcp", c.west)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(conn, tc.raw); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: tc.method})
				if err != nil {
					t.Fatalf("no answer within 5s (%v): the request bounced between the edges", err)
				}
				_ = resp.Body.Close()
				return resp.StatusCode == http.StatusBadGateway && strings.Contains(c.logs.String(), errLoop.Error())
			}, "a 502 from edge-west, which logs the loop")
		})
	}
}

// A client's Detour-Forwarded-By names no edge the request went through: an edge forwarding the
// request to its secondary keeps only the configured edges' names, so a client that sends
// thousands of others within the edge's max_header_bytes (64 KiB) has its request taken by the
// secondary as by the local pool, and the field does not grow with them from hop to hop. Sent
// on, they took the head past the secondary's own bound with the edge's forwarding fields: the
// secondary answered 431, for the fast path and the ReverseProxy path alike.
func TestAClientsNamesInDetourForwardedByDoNotReachTheSecondary(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	w1.Close()
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "west's requests to reach east's instance")
	for _, tc := range []struct{ name, head, body, method string }{
		{name: "a GET with an empty body (fast path)", head: "GET / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n", method: "GET"},
		{name: "a POST with a body (ReverseProxy path)", head: "POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\n", body: "hi", method: "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A head 100 bytes short of the 64 KiB the edge takes, most of it names.
			var names strings.Builder
			names.WriteString("Detour-Forwarded-By: edge-east-not")
			for i := 0; len(tc.head)+names.Len()+len("\r\n\r\n") < 64<<10-100; i++ {
				fmt.Fprintf(&names, ", n%d", i)
			}
			raw := tc.head + names.String()[:64<<10-100-len(tc.head)-4] + "\r\n\r\n" + tc.body
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: tc.method})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if want := "e1 " + tc.method + " " + tc.body; resp.StatusCode != http.StatusOK || string(body) != want || resp.Header.Get("Got-Hop") != "edge-west" {
				t.Errorf("answered %d %q, east's instance saw %s %q; want 200 %q, edge-west", resp.StatusCode, body, HeaderForwardedBy, resp.Header.Get("Got-Hop"), want)
			}
		})
	}
}

// A request no instance could take is answered with the status's text only, on every path and
// protocol: the reason (a dial error naming an instance's address, a malformed answer) would
// tell any client the edge's inside. The edge's log keeps it.
func TestAFailedRequestIsAnsweredWithoutItsReason(t *testing.T) {
	west, east := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	c := twoEdges(t, []string{west}, []string{east}, "http", "")
	_, westPort, _ := net.SplitHostPort(west)
	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, addr)
		}}}
	for _, tc := range []struct {
		name, raw string // raw HTTP/1.1, or an HTTP/2 request when empty
		method    string
	}{
		{name: "a plain GET (lean path)", raw: "GET / HTTP/1.1\r\n" + host + "\r\n", method: "GET"},
		{name: "a GET with an empty body (fast path)", raw: "GET / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", method: "GET"},
		{name: "a POST with a body (ReverseProxy path)", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", method: "POST"},
		{name: "an HTTP/2 GET", method: "GET"},
		{name: "an HTTP/2 POST with a body", method: "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if tc.raw != "" {
				var err error
				resp, err = http.ReadResponse(bufio.NewReader(sendRaw(t, c.west, tc.raw)), &http.Request{Method: tc.method})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var body io.Reader
				if tc.method == "POST" {
					body = strings.NewReader("hi")
				}
				req, _ := http.NewRequest(tc.method, "http://"+c.west+"/", body)
				req.Host = "shop.demo.test"
				var err error
				if resp, err = h2.Do(req); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || string(b) != "Bad Gateway\n" {
				t.Errorf("answered %d %q, want 502 %q", resp.StatusCode, b, "Bad Gateway\n")
			}
		})
	}
	if logs := c.logs.String(); !strings.Contains(logs, `"message":"request failed"`) || !strings.Contains(logs, ":"+westPort) {
		t.Errorf("the edges did not log why a request failed, naming the instance's address %s:\n%s", west, logs)
	}
}

func TestAClientsOwnForwardingHeadersAreReplaced(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	req, _ := http.NewRequest("GET", "http://"+c.west+"/", nil)
	req.Host = "shop.demo.test"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	req.Header.Set(HeaderForwardedBy, "edge-east") // claimed, but not from edge-east's address
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("Got-XFF"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want only the client's address 127.0.0.1", got)
	}
	if got := resp.Header.Get("Got-Forwarded"); got != "for=127.0.0.1;host=shop.demo.test;proto=http" {
		t.Errorf("Forwarded = %q, want only this hop", got)
	}
}

func TestWebSocketUpgradesPassThrough(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString("echo " + line)
		_ = rw.Flush()
	}))
	t.Cleanup(ws.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{ws.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET /socket HTTP/1.1\r\nHost: shop.demo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v; want 101", resp, err)
	}
	_, _ = io.WriteString(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("read %q, %v after the upgrade, want %q", line, err, "echo hello\n")
	}
}

func TestAStreamingResponseFlowsAndSurvivesARouteTableSwitch(t *testing.T) {
	next := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			w.Header().Set("Backend", "w1")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			_, _ = fmt.Fprintf(w, "chunk %d\n", i)
			_ = http.NewResponseController(w).Flush()
			select {
			case <-next[i]:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(stream.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{stream.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	resp, err := http.Get("http://" + c.west + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("chunk %d\n", i) {
			t.Fatalf("read %q, %v; want chunk %d before the backend sends the next", line, err, i)
		}
		if i == 0 {
			// New requests switch to the secondary; this one stays where it is.
			c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
			eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "the switch to east")
		}
		close(next[i])
	}
}

func TestHTTP2WithoutTLSIsServed(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}}
	resp, err := client.Get("http://" + c.west + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Backend") != "w1" {
		t.Fatalf("answer over %s from %q, want HTTP/2 from w1", resp.Proto, resp.Header.Get("Backend"))
	}
}

// echoServer is a TCP server that answers every line with its name and the line.
func echoServer(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					_, _ = fmt.Fprintf(c, "%s %s\n", name, s.Text())
				}
			}()
		}
	}()
	return ln
}

func talk(t *testing.T, addr, line string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, line+"\n")
	got, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(got)
}

func TestTheTCPProxyFailsOverToTheNextInstanceAndThenTheSecondary(t *testing.T) {
	w1, w2, e1 := echoServer(t, "w1"), echoServer(t, "w2"), echoServer(t, "e1")
	c := twoEdges(t, []string{w1.Addr().String(), w2.Addr().String()}, []string{e1.Addr().String()}, "tcp", "")
	// Connections take the local instances in turn, and twoEdges' own dial may have taken a
	// turn, so the first answer may come from either: that one goes away first.
	first, next, want := w1, w2, "w2 hi"
	switch got := talk(t, c.west, "hi"); got {
	case "w1 hi":
	case "w2 hi":
		first, next, want = w2, w1, "w1 hi"
	default:
		t.Fatalf("first connection answered %q, want a local instance's", got)
	}
	_ = first.Close()
	for range 4 {
		if got := talk(t, c.west, "hi"); got != want {
			t.Fatalf("with one local instance gone the answer was %q, want the other's %q", got, want)
		}
	}
	_ = next.Close()
	if got := talk(t, c.west, "hi"); got != "e1 hi" {
		t.Fatalf("with the local pool gone the answer was %q, want %q from the secondary", got, "e1 hi")
	}
}

func TestTheTCPProxyNeverPassesAConnectionFromAnotherEdgeOn(t *testing.T) {
	w1, e1 := echoServer(t, "w1"), echoServer(t, "e1")
	c := twoEdges(t, []string{w1.Addr().String()}, []string{e1.Addr().String()}, "tcp", "")
	_ = w1.Close()
	_ = e1.Close()
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes, want the connection closed: both pools are down and east must not send it back", n)
	}
}

// Two dual-stack TCP edges configured with IPv6 addresses, whose hostnames resolve to an IPv4
// address too: an edge must reach its peer over IPv6, from its own address, so that the peer
// knows the connection for an edge's and never passes it back. Over IPv4, from another address,
// a connection whose pools are both down bounced between them until they ran out of descriptors.
func TestATCPEdgeReachesItsPeerFromItsOwnAddressFamily(t *testing.T) {
	west, east := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	_, westPort, _ := net.SplitHostPort(west)
	_, eastPort, _ := net.SplitHostPort(east)
	cfg := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: %q}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: %q}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: "::1"
    heartbeat: {interval: 100ms}
    apps: [{app: shop, listen: "[::]:%s", mode: tcp, secondary: edge-east}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: "::1"
    heartbeat: {interval: 100ms}
    apps: [{app: shop, listen: "[::]:%s", mode: tcp, secondary: edge-west}]
`, freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), westPort, eastPort))
	ns := eventstest.Start(t)
	resolver := dnsServer(t, map[string]string{"edge-west.demo.test.": "127.0.0.1 ::1", "edge-east.demo.test.": "127.0.0.1 ::1"})
	var logs lockedBuffer
	for _, edge := range []string{"edge-west", "edge-east"} {
		log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &logs))
		eventstest.Run(t, edge, func(ctx context.Context) error {
			return Run(ctx, Options{JS: ns.JS, Config: cfg, Edge: edge, Resolver: resolver, Log: log})
		})
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Count(logs.String(), `"message":"peer edge resolved"`) >= 2 },
		"both edges to resolve their peer")
	conn, err := net.Dial("tcp", "127.0.0.1:"+westPort)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes (%v), want the connection closed: both pools are down and east must not send it back", n, err)
	}
	if strings.Contains(logs.String(), "too many open files") {
		t.Errorf("the edges ran out of descriptors passing one connection back and forth")
	}
}

// A client retrying in a loop while no target accepts its connections (the local pool and the
// secondary down) makes the edge log why once per 10 s, as for HTTP requests, not a line per
// connection: a thousand lines a second would bury everything else the edge logs.
func TestTheTCPProxyLogsConnectionsNoTargetAcceptedOnceAWhile(t *testing.T) {
	w1, e1 := echoServer(t, "w1"), echoServer(t, "e1")
	c := twoEdges(t, []string{w1.Addr().String()}, []string{e1.Addr().String()}, "tcp", "")
	_ = w1.Close()
	_ = e1.Close()
	const connections = 50
	for range connections {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes, want the connection closed: no target accepts it", n)
		}
		_ = conn.Close()
	}
	// Each edge logs once: edge-west for the client's connections, edge-east for those
	// edge-west tried it with.
	lines := func(edge string) int {
		n := 0
		for _, l := range strings.Split(c.logs.String(), "\n") {
			if strings.Contains(l, `"edge":"`+edge+`"`) && strings.Contains(l, "connection refused: no target accepted it") {
				n++
			}
		}
		return n
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return lines("edge-west") > 0 && lines("edge-east") > 0 },
		"no line saying why the connections were closed")
	for _, edge := range []string{"edge-west", "edge-east"} {
		if n := lines(edge); n != 1 {
			t.Errorf("%d connections refused within a few seconds: %s logged %d lines saying so, want 1", connections, edge, n)
		}
	}
}

// dnsServer answers A queries for the given names on 127.0.0.1.
// dnsServer serves records, names to their addresses (space-separated, A and AAAA records),
// over UDP on loopback, and returns its address.
func dnsServer(t testing.TB, records map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		mu.Lock()
		ips, ok := records[r.Question[0].Name]
		mu.Unlock()
		for ip := range strings.FieldsSeq(ips) {
			switch v4 := !strings.Contains(ip, ":"); {
			case ok && v4 && r.Question[0].Qtype == dns.TypeA:
				rr, _ := dns.NewRR(r.Question[0].Name + " 5 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			case ok && !v4 && r.Question[0].Qtype == dns.TypeAAAA:
				rr, _ := dns.NewRR(r.Question[0].Name + " 5 IN AAAA " + ip)
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestTheSecondaryIsReachedAtTheAddressItsHostnameResolvesTo(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	// The configured address of edge-east is 127.0.0.22; DNS says it has moved to 127.0.0.23.
	resolver := dnsServer(t, map[string]string{"edge-east.demo.test.": "127.0.0.23", "edge-west.demo.test.": "127.0.0.21"})
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", resolver)
	_, port, _ := net.SplitHostPort(c.east)
	moved := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderPing) != "" {
			w.Header().Set(HeaderEdge, "edge-east")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Backend", "moved")
	}))
	ln, err := net.Listen("tcp", "127.0.0.23:"+port)
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.23:%s: %v", port, err)
	}
	moved.Listener = ln
	moved.Start()
	t.Cleanup(moved.Close)
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "moved" },
		"requests forwarded to the resolved address 127.0.0.23")
}

func TestADeadSecondaryCostsNoFailedRequest(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "forwarding to east")
	c.stop("edge-east")
	// With east gone and no word from the controller, west falls back to its own instance,
	// which still answers: the decider may be wrong, a dead secondary certainly is.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		resp, _ := get(t, "http://"+c.west+"/")
		return resp.StatusCode == 200 && resp.Header.Get("Backend") == "w1"
	}, "west to stop using dead east")
}

func TestTheEdgePublishesHeartbeats(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	sub, err := c.ns.Conn.SubscribeSync(events.HeartbeatSubject("edge-west"))
	if err != nil {
		t.Fatal(err)
	}
	var last events.Heartbeat
	for range 2 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no heartbeat: %v", err)
		}
		env, err := events.Decode(m.Data)
		if err != nil || env.Type != events.TypeEdgeHeartbeat {
			t.Fatalf("heartbeat %q: %v", m.Data, err)
		}
		var hb events.Heartbeat
		if err := env.Payload(&hb); err != nil {
			t.Fatal(err)
		}
		if hb.Edge != "edge-west" || hb.Region != "us-west" || hb.IntervalMS != 100 {
			t.Fatalf("heartbeat = %+v, want edge-west us-west every 100ms", hb)
		}
		if last.Seq != 0 && hb.Seq != last.Seq+1 {
			t.Fatalf("heartbeat seq %d after %d, want consecutive", hb.Seq, last.Seq)
		}
		last = hb
	}
}

func TestRunRefusesAnEdgeThatIsNotConfiguredAndAListenerInUse(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	log, resolver := zerolog.New(zerolog.NewTestWriter(t)), dnsServer(t, nil)
	err := Run(context.Background(), Options{JS: c.ns.JS, Config: c.cfg, Edge: "edge-north", Resolver: resolver, Log: log})
	if err == nil || err.Error() != `run edge: no edge "edge-north" in the configuration` {
		t.Errorf("unknown edge: err = %v", err)
	}
	err = Run(context.Background(), Options{JS: c.ns.JS, Config: c.cfg, Edge: "edge-west", Resolver: resolver, Log: log})
	if err == nil || !strings.Contains(err.Error(), "run edge edge-west: listen for app shop on "+c.west) {
		t.Errorf("listener in use: err = %v", err)
	}
}

func TestARestartedEdgeStartsFromTheLastStoredRouteTable(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	c.stop("edge-west")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	c.start("edge-west", "")
	// w1 still answers: only the stored table can send these requests to east.
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "the restarted edge to follow its stored table")
}

// A route of app shop stored on another app's subject (a controller's mistake, or a forged
// message) does not switch shop: it is skipped as malformed, as a route for another edge is.
func TestARouteStoredOnAnotherAppsSubjectIsNotApplied(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	if got := backendOf(t, "http://"+c.west+"/"); got != "w1" {
		t.Fatalf("edge-west answered from %s, want w1", got)
	}
	down := state.NewView()
	e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Apply(events.EndpointStateSubject("shop", "west", "i0"), 1, e); err != nil {
		t.Fatal(err)
	}
	table, err := route.Compute(c.cfg, down, "edge-west", "")
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.New(events.TypeRouteComputed, "test", time.Now(), events.EdgeRoute{Edge: "edge-west", Route: table.Apps[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), c.ns.JS, events.AppRouteSubject("edge-west", "blog"), env); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		if got := backendOf(t, "http://"+c.west+"/"); got != "w1" {
			t.Fatalf("edge-west answered from %s after a route of shop stored on blog's subject, want w1", got)
		}
		return strings.Contains(c.logs.String(), `"message":"malformed messages skipped"`)
	}, "edge-west to skip the route as malformed")
}

// A route whose weights overflow when summed (a forged message, or a controller's mistake: the
// configuration allows at most config.MaxWeight) is refused as malformed: the rotation over the
// instances divided by that sum, and a TCP connection, whose goroutine nothing recovers, took
// the whole edge down with it.
func TestARouteWhoseWeightsPassTheConfigurationsBoundIsNotApplied(t *testing.T) {
	w1 := echoServer(t, "w1")
	c := twoEdges(t, []string{w1.Addr().String()}, []string{echoServer(t, "e1").Addr().String()}, "tcp", "")
	if got := talk(t, c.west, "hi"); got != "w1 hi" {
		t.Fatalf("edge-west answered %q, want %q", got, "w1 hi")
	}
	const most = int(^uint(0) >> 1)
	r := events.AppRoute{App: "shop", Pool: "west", Available: true, Endpoints: []events.RouteEndpoint{
		{Name: "a", Address: w1.Addr().String(), Status: events.StatusUp, Weight: most},
		{Name: "b", Address: w1.Addr().String(), Status: events.StatusUp, Weight: most},
		{Name: "c", Address: w1.Addr().String(), Status: events.StatusUp, Weight: 2},
	}}
	env, err := events.New(events.TypeRouteComputed, "test", time.Now(), events.EdgeRoute{Edge: "edge-west", Route: r})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), c.ns.JS, events.AppRouteSubject("edge-west", "shop"), env); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		if got := talk(t, c.west, "hi"); got != "w1 hi" {
			t.Fatalf("edge-west answered %q after a route whose weights overflow, want %q", got, "w1 hi")
		}
		return strings.Contains(c.logs.String(), `"message":"malformed messages skipped"`)
	}, "edge-west to skip the route as malformed")
}

func TestAnEdgeStoppedRightAfterARouteChangeSavesThatRouteInItsSnapshot(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	c := twoEdgesOn(t, ns, t.TempDir(), []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "", "")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "edge-west to follow the route to east")
	// Within a second of the save of that route, west is back, and the edge stops.
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "w1" }, "edge-west to follow the route back to west")
	ns.Stop()
	c.stop("edge-west")
	c.start("edge-west", "")
	// NATS is away: only the snapshot routes, and it must hold the last route applied.
	for range 20 {
		if got := backendOf(t, "http://"+c.west+"/"); got != "w1" {
			t.Fatalf("edge-west restarted without NATS answered from %s, want w1 as the last route applied before it stopped", got)
		}
	}
}

func TestAnEdgeRestartedWhileNATSIsAwayRoutesFromItsSnapshotAndCatchesUpWhenNATSReturns(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	c := twoEdgesOn(t, ns, t.TempDir(), []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "", "")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "edge-west to follow the table")

	ns.Stop()
	c.stop("edge-west")
	c.start("edge-west", "")
	// w1 still answers: only the snapshot can send these requests to east.
	for range 20 {
		if got := backendOf(t, "http://"+c.west+"/"); got != "e1" {
			t.Fatalf("edge-west restarted without NATS answered from %s, want e1 as its snapshot says", got)
		}
	}
	ns.Restart(t)
	eventstest.Eventually(t, 10*time.Second, ns.Conn.IsConnected, "the test's connection back")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "w1" },
		"edge-west to follow a table stored after NATS returned")
}

// A client that sends without reading, to an instance that echoes what it reads, fills both
// directions: the edge's writes to either side wait, and no read waits. tcp_idle (no byte
// either way) still ends both connections.
func TestATCPConnectionStuckWritingBothWaysEndsAfterTCPIdle(t *testing.T) {
	released := make(chan struct{}, 1)
	echo := rawInstance(t, func(c net.Conn) {
		if n, _ := io.Copy(c, c); n == 0 {
			return // a connection that carried nothing: not the client's
		}
		select {
		case released <- struct{}{}:
		default:
		}
	})
	e1 := echoServer(t, "e1")
	c := twoEdgesWith(t, []string{echo}, []string{e1.Addr().String()}, "tcp", "", ", timeouts: {tcp_idle: 300ms}")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's connection was still open 5s after neither side read, want it closed after tcp_idle (300ms)")
	}
}

// TestAnUpgradeRequestWithABodyIsForwardedWithoutTheUpgrade: RFC 9112 §9.9 (and RFC 9110 §7.8)
// lets a protocol change take effect only after the whole request, body included; an instance
// that switches before the body arrived would have the edge relay the rest of the body and the
// tunnel at once, read from the client's connection by two goroutines (ReverseProxy's tunnel and
// the transport's body). The edge ignores the Upgrade of a request with a body, as RFC 9110 §7.8
// lets a server: the instance gets the request, body whole, without it.
func TestAnUpgradeRequestWithABodyIsForwardedWithoutTheUpgrade(t *testing.T) {
	got := make(chan string, 1)
	instance := rawInstance(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Header.Get("Upgrade") != "" {
			// As a WebSocket server does: the switch, before reading any body.
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
			rest, _ := io.ReadAll(br)
			got <- fmt.Sprintf("switched, then read %q", rest)
			return
		}
		body, err := io.ReadAll(req.Body)
		got <- fmt.Sprintf("body %q, %v", body, err)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	c := twoEdges(t, []string{instance}, []string{instance}, "http", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "POST /socket HTTP/1.1\r\nHost: shop.demo.test\r\nUpgrade: foo\r\nConnection: Upgrade\r\nContent-Length: 10\r\n\r\n01234")
	_, _ = io.WriteString(conn, "56789")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("answered %d, want 200 (the upgrade ignored)", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "TUNNEL")
	select {
	case s := <-got:
		if want := fmt.Sprintf("body %q, %v", "0123456789", nil); s != want {
			t.Errorf("the instance: %s, want %s", s, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("the instance got nothing")
	}
}

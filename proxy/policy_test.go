package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawInstance is an instance that runs serve on each connection it accepts.
func rawInstance(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// answerEach serves an instance's connection by reading each request, its body too, and
// answering it with answer, until a read or a write fails.
func answerEach(answer string) func(c net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	}
}

// hung accepts connections, reads what comes and never answers.
func hung(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func TestAHungInstanceIsAFailoverNotAHang(t *testing.T) {
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, hung)}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {response_header: 500ms}")
	client := &http.Client{Timeout: 10 * time.Second}
	for _, method := range []string{"GET", "HEAD", "OPTIONS"} {
		start := time.Now()
		req, _ := http.NewRequest(method, "http://"+c.west+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		_ = resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != 200 || resp.Header.Get("Backend") != "e1" {
			t.Errorf("%s: %d from %q, want 200 from the secondary's e1", method, resp.StatusCode, resp.Header.Get("Backend"))
		}
		if took > 1500*time.Millisecond {
			t.Errorf("%s answered after %s, want within response_header (500ms) + 1s", method, took)
		}
	}
}

// countingInstance answers every request but a POST 200 and keeps the connection; a POST it
// counts, then closes the connection without answering, as an instance does that crashed while
// processing it.
func countingInstance(t *testing.T, seen *sync.Map) string {
	return rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if req.Method != http.MethodPost {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			v, _ := seen.LoadOrStore(req.Method, new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
			return
		}
	})
}

func TestAPostIsNeverSentTwice(t *testing.T) {
	var seen sync.Map
	c := twoEdges(t, []string{countingInstance(t, &seen)}, []string{countingInstance(t, &seen)}, "http", "")
	client := &http.Client{Timeout: 5 * time.Second}
	for _, body := range []string{"", "two apples"} {
		seen.Clear()
		// A first request leaves a connection to the instance in the pool of the path the POST
		// takes (a GET for a POST without a body, a PUT with a body for one with); the POST
		// reuses it and the instance closes it without an answer.
		prime, _ := http.NewRequest("GET", "http://"+c.west+"/", nil)
		if body != "" {
			prime, _ = http.NewRequest("PUT", "http://"+c.west+"/", strings.NewReader("prime"))
		}
		resp, err := client.Do(prime)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d, want 200", prime.Method, resp.StatusCode)
		}
		req, _ := http.NewRequest("POST", "http://"+c.west+"/order", strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("POST %q: %d, want 502: the instance may have processed it", body, resp.StatusCode)
		}
		n, _ := seen.Load("POST")
		if n == nil || n.(*atomic.Int32).Load() != 1 {
			t.Errorf("POST %q reached the instances %v times, want exactly once", body, n)
		}
	}
}

func TestABlackholedInstanceCostsOneConnectTimeoutAndIsThenSkipped(t *testing.T) {
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{eventstest.Blackhole(t)}, []string{e1.Listener.Addr().String()}, "http", "")
	connect := c.cfg.Edge("edge-west").Apps[0].Timeouts.Connect.D()
	if connect != 500*time.Millisecond {
		t.Fatalf("default connect timeout = %s, want 500ms", connect)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	// A POST with a body: the connection was never made, so nothing was sent and the secondary
	// may take it, body and all.
	start := time.Now()
	resp, err := client.Post("http://"+c.west+"/order", "text/plain", strings.NewReader("two apples"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 200 || string(body) != "e1 POST two apples" {
		t.Fatalf("POST answered %d %q, want 200 %q from the secondary", resp.StatusCode, body, "e1 POST two apples")
	}
	if took < connect || took > connect+time.Second {
		t.Errorf("POST answered after %s, want after the connect timeout (%s) and within a second of it", took, connect)
	}
	// The instance is ejected: what follows goes straight to the secondary, on every path,
	// without a retry and without waiting for the connect timeout again.
	m := c.metrics
	retries := testutil.ToFloat64(m.EdgeRetries.WithLabelValues("edge-west", "shop"))
	for i := range 10 {
		method := []string{"GET", "HEAD"}[i%2] // the lean path and net/http's
		req, _ := http.NewRequest(method, "http://"+c.west+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Backend") != "e1" {
			t.Fatalf("%s %d: %d from %q, want 200 from the secondary's e1", method, i, resp.StatusCode, resp.Header.Get("Backend"))
		}
	}
	if got := testutil.ToFloat64(m.EdgeRetries.WithLabelValues("edge-west", "shop")); got != retries {
		t.Errorf("retries went from %v to %v over 10 requests, want none: the ejected instance must not be tried again within passive_cooldown", retries, got)
	}
	if got := testutil.ToFloat64(m.EdgeEjections.WithLabelValues("edge-west", "shop")); got != 1 {
		t.Errorf("detour_edge_ejections_total = %v, want 1", got)
	}
}

func TestABlackholedInstanceCostsATCPConnectionOnlyTheConnectTimeout(t *testing.T) {
	e1 := echoServer(t, "e1")
	c := twoEdgesWith(t, []string{eventstest.Blackhole(t)}, []string{e1.Addr().String()}, "tcp", "", ", timeouts: {connect: 200ms}")
	start := time.Now()
	if got := talk(t, c.west, "hi"); got != "e1 hi" {
		t.Fatalf("answer %q, want %q from the secondary", got, "e1 hi")
	}
	if took := time.Since(start); took > 200*time.Millisecond+time.Second {
		t.Errorf("answered after %s, want within a second of the connect timeout (200ms)", took)
	}
}

func TestAnEjectedInstanceReturnsWhenTheRouteTableSaysItRecovered(t *testing.T) {
	w1addr := freeAddr(t, "127.0.0.1") // refuses connections until w1 starts there
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{w1addr}, []string{e1.Listener.Addr().String()}, "http", "", ", passive_cooldown: 1h")
	if got := backendOf(t, "http://"+c.west+"/"); got != "e1" {
		t.Fatalf("with w1 refusing, answered by %q, want e1", got)
	}
	ln, err := net.Listen("tcp", w1addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", w1addr, err)
	}
	w1 := httptest.NewUnstartedServer(backend(t, "w1").Config.Handler)
	w1.Listener = ln
	w1.Start()
	t.Cleanup(w1.Close)
	if got := backendOf(t, "http://"+c.west+"/"); got != "e1" {
		t.Fatalf("within passive_cooldown, answered by %q, want e1: w1 is ejected", got)
	}
	// The route table says it recovered when the edge saw it down, then up: an edge that sees
	// only the up (its routes' consumer started after the down was stored, and begins at the
	// last route) keeps it ejected, as unknown → up may be older news than the failure. So
	// the up is published once the edge applied the down.
	applied := func() int {
		n := 0
		for _, l := range strings.Split(c.logs.String(), "\n") {
			if strings.Contains(l, `"edge":"edge-west"`) && strings.Contains(l, `"message":"route applied"`) {
				n++
			}
		}
		return n
	}
	before := applied()
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return applied() > before }, "edge-west applied the route with w1 down")
	c.mark(events.EndpointStateSubject("shop", "west", "i0"), events.TypeEndpointUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "w1" },
		"w1 back in rotation once the route table says it is up, an hour before its cooldown ends")
}

func TestA503IsRetriedOnTheSecondaryOnlyWhenRetryOnNamesIt(t *testing.T) {
	var hits atomic.Int32
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			hits.Add(1)
			_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy")
		}
	})
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "", ", retry_on: [connect_failure, timeout, 503]")
	for i := range 10 {
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(method, "http://"+c.west+"/", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Backend") != "e1" {
				t.Fatalf("%s %d: %d from %q, want the secondary's 200", method, i, resp.StatusCode, resp.Header.Get("Backend"))
			}
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("the failing instance got %d requests, want 3 (passive_fall) before it is skipped for passive_cooldown", n)
	}

	d := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	d.stop("edge-east")
	resp, body := get(t, "http://"+d.west+"/")
	if resp.StatusCode != 503 || body != "busy" {
		t.Errorf("without retry_on 503: %d %q, want the instance's own 503", resp.StatusCode, body)
	}
}

// endless answers every request with a body longer than an edge could relay in minutes, in the
// framing its path names: /plain relayed as it came, /sniffed without a Content-Type, /chunked
// without a length. It writes until its connection fails, then sends the path on released.
func endless(released chan<- string) func(c net.Conn) {
	return func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1099511627776\r\n\r\n"
		switch req.URL.Path {
		case "/sniffed":
			head = "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n"
		case "/chunked":
			head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
			chunk = append(append([]byte("10000\r\n"), chunk...), "\r\n"...)
		}
		_, err = io.WriteString(c, head)
		for err == nil {
			_, err = c.Write(chunk)
		}
		released <- req.URL.Path
	}
}

func TestASlowReaderDoesNotHoldTheUpstreamConnectionOnAnyPath(t *testing.T) {
	released := make(chan string, 1)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, endless(released))}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 300ms}")
	for _, tc := range []struct{ name, raw string }{
		{"lean, relayed as it came", "GET /plain HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"lean, sniffed", "GET /sniffed HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"lean, chunked", "GET /chunked HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"net/http", "GET http://shop/plain HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"net/http, chunked", "GET http://shop/chunked HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"ReverseProxy", "PUT /plain HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi"},
	} {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		_, _ = io.WriteString(conn, tc.raw)
		// The client reads nothing more. Its request's answer is longer than the edge could pull
		// from the instance before the deadline: only closing the connection ends the instance's
		// writes.
		select {
		case <-released:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the instance was still sending to the edge 5s after the client stopped reading, want its connection closed after client_write (300ms)", tc.name)
		}
		_ = conn.Close()
	}
}

// An HTTP/2 client that grants no flow-control window reads nothing either: client_write
// bounds its request as it does an HTTP/1.1 client's that stops reading.
func TestAnHTTP2ClientThatGrantsNoWindowDoesNotHoldTheUpstreamConnection(t *testing.T) {
	released := make(chan string, 1)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, endless(released))}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 300ms}")
	for _, tc := range []struct {
		name, method, path string
		body               []byte
	}{
		{"fast path", "GET", "/plain", nil},
		{"fast path, chunked", "GET", "/chunked", nil},
		{"ReverseProxy", "PUT", "/plain", []byte("hi")},
	} {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, http2.ClientPreface)
		fr := http2.NewFramer(conn, conn)
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		fields := [][2]string{{":method", tc.method}, {":scheme", "http"}, {":authority", "shop"}, {":path", tc.path}}
		if tc.body != nil {
			fields = append(fields, [2]string{"content-length", strconv.Itoa(len(tc.body))})
		}
		for _, f := range fields {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: tc.body == nil})
		if tc.body != nil {
			_ = fr.WriteData(1, true, tc.body)
		}
		// The client takes what the edge sends, but never a byte of the answer's body: the
		// window of its stream stays 0.
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		select {
		case <-released:
		case <-time.After(5 * time.Second):
			_ = conn.Close()
			t.Fatalf("%s: the instance was still sending to the edge 5s after a client that grants no window asked, want its connection closed after client_write (300ms)", tc.name)
		}
		_ = conn.Close()
	}
}

// An instance that fails in the middle of an answer of unknown length: the client must see the
// answer end early, as with ReverseProxy, never a complete answer it could keep or cache.
func TestAnAnswerCutShortNeverReachesTheClientAsComplete(t *testing.T) {
	w1 := rawInstance(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
		if req.URL.Path == "/sniffed" {
			head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		}
		// The first half of the answer, then the instance dies.
		_, _ = io.WriteString(c, head+"6\r\nfirst \r\n")
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, tc := range []struct{ name, raw, method string }{
		{"lean", "GET /typed HTTP/1.1\r\nHost: shop\r\n\r\n", "GET"},
		{"lean, sniffed", "GET /sniffed HTTP/1.1\r\nHost: shop\r\n\r\n", "GET"},
		{"net/http", "GET http://shop/typed HTTP/1.1\r\nHost: shop\r\n\r\n", "GET"},
		{"ReverseProxy", "PUT /typed HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi", "PUT"},
	} {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, tc.raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: tc.method})
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("%s: the client got %s %q as a complete answer, want it cut short", tc.name, resp.Status, body)
			}
		}
		_ = conn.Close()
	}
}

// An instance whose answer's head never ends: the edge stops reading it past the size
// http.Transport allows a head, as on the ReverseProxy path, rather than holding all of it until
// the response_header timeout.
func TestAnAnswerHeadThatNeverEndsIsRefusedAtItsLimit(t *testing.T) {
	w1 := rawInstance(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		line := []byte("X-Endless: " + strings.Repeat("a", 4000) + "\r\n")
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for err == nil {
			_, err = c.Write(line)
		}
	})
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "", ", retry_on: []")
	for _, tc := range []struct{ name, raw string }{
		{"lean", "GET / HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"net/http", "GET http://shop/ HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"ReverseProxy", "PUT / HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi"},
	} {
		start := time.Now()
		resp, body := exchangeRaw(t, c.west, tc.raw)
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, errHeaderTimeout.Error()) {
			t.Errorf("%s: %s %q after %v, want 502 once the head is over its limit", tc.name, resp.Status, body, time.Since(start).Round(time.Millisecond))
		}
	}
}

func TestAnInstancesExtraBytesNeverReachAnotherClient(t *testing.T) {
	var n atomic.Int32
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if n.Add(1) == 1 {
				// An answer followed by a second, unsolicited one.
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfirst"+
					"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nSMUGGLED")
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfresh")
		}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for i, want := range []string{"first", "fresh", "fresh"} {
		// A new client each time, over the edge's one pooled connection to the instance.
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		method := []string{"GET", "GET", "HEAD"}[i]
		req, _ := http.NewRequest(method, "http://"+c.west+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if method == "HEAD" {
			want = ""
		}
		if string(body) != want {
			t.Fatalf("client %d (%s) got %q, want %q", i, method, body, want)
		}
	}
}

func TestAClientCannotSpoofTheForwardedByField(t *testing.T) {
	w1, e1 := backend(t, "w1"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	w1.Close()
	for _, method := range []string{"GET", "DELETE", "PUT"} {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			req, _ := http.NewRequest(method, "http://"+c.west+"/", strings.NewReader("x"))
			if method != "PUT" {
				req.Body, req.ContentLength = nil, 0
			}
			req.Header.Set(HeaderForwardedBy, "edge-east")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode == 200 && resp.Header.Get("Backend") == "e1" && resp.Header.Get("Got-Hop") == "edge-west"
		}, "%s claiming to come from edge-east to be forwarded to the secondary all the same, marked by edge-west only", method)
	}
}

// A client that leaves on the lean path while its slow answer arrives: the edge watches the
// client during the wait and, seeing it gone, ends the upstream connection's reads and writes
// with a deadline in the past. When the answer came first, that connection must not be
// relayed on and pooled: the next request to take it would fail to be sent, be charged to the
// instance and go to the secondary edge.
func TestAClientThatLeavesAsItsSlowAnswerArrivesLeavesNoDeadConnectionInThePool(t *testing.T) {
	waiting, release := make(chan struct{}, 1), make(chan struct{}, 1)
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := "w1"
			if req.URL.Path == "/slow" {
				waiting <- struct{}{}
				<-release
				body = "w1 slow"
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
				return
			}
		}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	ask := func(raw string) string {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, raw)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + ": " + string(b)
	}
	const want = "200 OK: w1"
	if got := ask("GET /fast HTTP/1.1\r\nHost: shop\r\n\r\n"); got != want {
		t.Fatalf("before any client left: %q, want %q", got, want)
	}
	for i := range 10 {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n")
		select {
		case <-waiting:
		case <-time.After(5 * time.Second):
			t.Fatal("the slow request never reached the instance")
		}
		// The instance answers later than slowAnswer, so the edge watches the client meanwhile;
		// the answer and the client's leaving then arrive together.
		time.Sleep(3 * slowAnswer)
		release <- struct{}{}
		_ = conn.Close()
		if got := ask("GET /fast HTTP/1.1\r\nHost: shop\r\n\r\n"); got != want {
			t.Fatalf("after %d clients left as their slow answers arrived, the next request got %q, want %q from the instance", i+1, got, want)
		}
	}
}

func TestAClientThatLeavesCancelsItsRequestUpstreamOnEveryPath(t *testing.T) {
	received, released := make(chan string, 4), make(chan string, 4)
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		received <- req.Method
		_, _ = io.Copy(io.Discard, br) // never answers; returns when the edge closes the connection
		released <- req.Method
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, raw := range []string{
		"GET /lean HTTP/1.1\r\nHost: shop\r\n\r\n",                        // the lean path
		"HEAD /fast HTTP/1.1\r\nHost: shop\r\n\r\n",                       // net/http, no body
		"PUT /body HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi", // ReverseProxy
	} {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, raw)
		// Let the request reach the instance, then leave.
		method := strings.Fields(raw)[0]
		select {
		case <-received:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never reached the instance", method)
		}
		// Leaving is a reset: a close that only ends what the client sends (a FIN, a
		// half-close) before its answer began is served
		// (TestAClientThatHalfClosesAfterItsRequestGetsItsAnswer).
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
		waitReleased(t, released, method, "")
	}
}

// waitReleased waits for the instance to report, on released, that the edge let go of the
// request want once its client left (when: how it left, for the failure's message).
func waitReleased(t *testing.T, released <-chan string, want, when string) {
	t.Helper()
	select {
	case got := <-released:
		if got != want {
			t.Errorf("released %s, want %s", got, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: the edge still waited on the instance 3s after its client left%s, want the upstream request cancelled", want, when)
	}
}

// A client that leaves while its answer's body is on its way, the instance having sent part of
// it and then nothing more (a stream, a hung instance), cancels the request upstream on every
// path, as it does while the head is awaited: the lean path, whose relay reads the body on the
// client's own goroutine, would otherwise wait on the instance, holding both connections, until
// the instance sent more or closed.
func TestAClientThatLeavesMidBodyCancelsItsRequestUpstreamOnEveryPath(t *testing.T) {
	released := make(chan string, 8)
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		// More than a writer buffers, so that some reaches the client on every path.
		part := strings.Repeat("x", 16<<10) + "hello"
		if strings.HasSuffix(req.URL.Path, "/sized") {
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", 2*len(part), part)
		} else {
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(part), part)
		}
		_, _ = io.Copy(io.Discard, br) // sends nothing more; returns when the edge closes the connection
		released <- req.Method + " " + req.URL.Path
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, raw := range []string{
		"GET /lean/sized HTTP/1.1\r\nHost: shop\r\n\r\n",   // the lean path, relayed as it came
		"GET /lean/chunked HTTP/1.1\r\nHost: shop\r\n\r\n", // the lean path, through net/http's reader
		"GET /fast/sized HTTP/1.0\r\nHost: shop\r\n\r\n",   // net/http, no body
		"GET /fast/chunked HTTP/1.0\r\nHost: shop\r\n\r\n",
		"PUT /body/sized HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi", // ReverseProxy
		"PUT /body/chunked HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
	} {
		req := strings.Join(strings.Fields(raw)[:2], " ")
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, raw)
		// Leave once some of the body arrived.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		for !bytes.Contains(got, []byte("xxxx")) {
			b := make([]byte, 512)
			n, err := conn.Read(b)
			got = append(got, b[:n]...)
			if err != nil {
				t.Fatalf("%s: read %.100q (%v), want some of the body", req, got, err)
			}
		}
		_ = conn.Close()
		waitReleased(t, released, req, " mid-body")
	}
}

// underscoreEcho is an instance that answers with the X-Forwarded-For it received and its
// fields whose names hold an underscore ("xff=… underscored=[X_forwarded_for: 6.6.6.6]").
func underscoreEcho(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var under []string
		for k, vs := range r.Header {
			if strings.Contains(k, "_") {
				under = append(under, k+": "+strings.Join(vs, ", "))
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = fmt.Fprintf(w, "xff=%s underscored=%v", r.Header.Get("X-Forwarded-For"), under)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// A gateway that folds '-' and '_' into one variable (CGI's, WSGI's, PHP's HTTP_X_FORWARDED_FOR)
// would take a client's X_Forwarded_For for the X-Forwarded-For the edge sets: a field name
// with an underscore is dropped on every path, as nginx drops it, unless
// underscores_in_headers allows it.
func TestARequestFieldNameWithAnUnderscoreIsDroppedOnEveryPathUnlessAllowed(t *testing.T) {
	const spoof = "X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n"
	h2Fields := [][2]string{{"x_forwarded_for", "6.6.6.6"}, {"x-forwarded-for", "1.2.3.4"}}
	for _, tc := range []struct {
		name, extra, want string
	}{
		{name: "by default", want: "xff=127.0.0.1 underscored=[]"},
		{name: "with underscores_in_headers", extra: ", underscores_in_headers: true", want: "xff=127.0.0.1 underscored=[X_forwarded_for: 6.6.6.6]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e1 := backend(t, "e1")
			c := twoEdgesWith(t, []string{underscoreEcho(t)}, []string{e1.Listener.Addr().String()}, "http", "", tc.extra)
			for _, raw := range []string{
				"GET /lean HTTP/1.1\r\nHost: shop\r\n" + spoof + "\r\n",                        // the lean path
				"GET http://shop/fast HTTP/1.1\r\nHost: shop\r\n" + spoof + "\r\n",             // net/http, no body
				"PUT /body HTTP/1.1\r\nHost: shop\r\n" + spoof + "Content-Length: 2\r\n\r\nhi", // ReverseProxy
			} {
				if resp, body := exchangeRaw(t, c.west, raw); resp.StatusCode != 200 || body != tc.want {
					t.Errorf("%s: the instance saw %q (%s), want %q", strings.Join(strings.Fields(raw)[:2], " "), body, resp.Status, tc.want)
				}
			}
			for _, h2 := range []struct {
				method string
				body   []byte
			}{{"GET", nil}, {"PUT", []byte("hi")}} { // the fast path, ReverseProxy
				got, _, how := h2ExchangeWith(t, c.west, h2.method, "/h2", h2.body, h2Fields, 5*time.Second)
				if how != "complete" || string(got) != tc.want {
					t.Errorf("HTTP/2 %s: the instance saw %q (stream %s), want %q", h2.method, got, how, tc.want)
				}
			}
		})
	}
}

// A client that closes its connection while its request is served, with a reset or with a FIN
// (which the edge cannot tell from a half-close), is found gone when a write of its answer
// fails: the request is then cancelled upstream at once, on every path, though the instance
// sends nothing more.
func TestAClientThatClosedBeforeItsAnswerCancelsItsRequestUpstreamOnAFailedWrite(t *testing.T) {
	received, closed, cancelled := make(chan struct{}, 1), make(chan struct{}, 1), make(chan string, 1)
	part := strings.Repeat("x", 64<<10) // more than the edge buffers: it writes before the pause
	instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received <- struct{}{}
		<-closed
		if strings.HasSuffix(r.URL.Path, "/sized") {
			w.Header().Set("Content-Length", strconv.Itoa(2*len(part)))
		}
		_, _ = io.WriteString(w, part)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
			cancelled <- r.Method + " " + r.URL.Path
		case <-time.After(10 * time.Second):
			cancelled <- "nothing"
		}
	}))
	t.Cleanup(instance.Close)
	c := twoEdges(t, []string{instance.Listener.Addr().String()}, []string{instance.Listener.Addr().String()}, "http", "")
	for _, how := range []string{"a reset", "a FIN"} {
		for _, raw := range []string{
			"GET /lean/sized HTTP/1.1\r\nHost: shop\r\n\r\n",
			"GET /lean/chunked HTTP/1.1\r\nHost: shop\r\n\r\n",
			"GET /fast/sized HTTP/1.0\r\nHost: shop\r\n\r\n",
			"GET /fast/chunked HTTP/1.0\r\nHost: shop\r\n\r\n",
			"PUT /body/sized HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
			"PUT /body/chunked HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
		} {
			req := strings.Join(strings.Fields(raw)[:2], " ")
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(conn, raw)
			select {
			case <-received:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s never reached the instance", req)
			}
			if how == "a reset" {
				_ = conn.(*net.TCPConn).SetLinger(0)
			}
			_ = conn.Close()
			closed <- struct{}{}
			select {
			case got := <-cancelled:
				if got != req {
					t.Errorf("%s, its client having closed with %s: the instance's request ended with %s, want it cancelled", req, how, got)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("%s: the instance's request was not cancelled 3s after its client closed with %s", req, how)
			}
		}
	}
}

// A client that leaves after client_header has passed, its answer still awaited, cancels its
// request upstream on the lean path too: the watch on the client read the connection under the
// deadline its head was read under, and stopped watching, the client's leaving unseen, at
// client_header (10 s by default, when response_header is 15 s).
func TestAClientThatLeavesAfterClientHeaderCancelsItsRequestUpstream(t *testing.T) {
	const clientHeader = time.Second
	received, released := make(chan string, 4), make(chan string, 4)
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			received <- req.URL.Path
			if req.URL.Path == "/answered" {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			_, _ = io.Copy(io.Discard, br) // never answers; returns when the edge closes the connection
			released <- req.URL.Path
			return
		}
	})
	c := twoEdgesWith(t, []string{w1}, []string{w1}, "http", "", ", timeouts: {client_header: 1s}")
	for _, tc := range []struct {
		name string
		// answered, when set, is sent and answered first on the connection; then the head of
		// a request to /slow in parts, one write each. The client leaves client_header and a
		// half after that head's first byte.
		answered bool
		parts    []string
	}{
		{name: "a first request", parts: []string{"GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n"}},
		{name: "a later request whose head came in two writes", answered: true,
			parts: []string{"GET /slow HTTP/1.1\r\n", "Host: shop\r\n\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if tc.answered {
				if _, err := io.WriteString(conn, "GET /answered HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				<-received
				start = time.Now()
			}
			for i, p := range tc.parts {
				if i > 0 {
					time.Sleep(100 * time.Millisecond) // the client's pace: the head comes in two reads
				}
				if _, err := io.WriteString(conn, p); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-received:
			case <-time.After(5 * time.Second):
				t.Fatal("the request never reached the instance")
			}
			time.Sleep(time.Until(start.Add(clientHeader + clientHeader/2))) // the client's pace
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close()
			waitReleased(t, released, "/slow", " after client_header")
		})
	}
}

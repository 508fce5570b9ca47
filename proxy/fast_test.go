package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

func TestHopByHopHeadersAreNotForwarded(t *testing.T) {
	seen := make(chan http.Header, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "backend secret")
		w.Header().Set("Keep-Alive", "timeout=5")
	}))
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	req, _ := http.NewRequest("GET", "http://"+c.west+"/", nil)
	req.Header.Set("Connection", "X-Session")
	req.Header.Set("X-Session", "client secret")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("X-Kept", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	h := <-seen
	for _, k := range []string{"X-Session", "Proxy-Authorization"} {
		if v := h.Get(k); v != "" {
			t.Errorf("the backend received %s: %q", k, v)
		}
	}
	if h.Get("X-Kept") != "yes" {
		t.Errorf("the backend did not receive an end-to-end header: %v", h)
	}
	for _, k := range []string{"X-Internal", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("the client received %s: %q", k, v)
		}
	}
}

func TestConnectionsToAnInstanceAreReusedAndReplacedWhenItClosesThem(t *testing.T) {
	var opened atomic.Int64
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	for range 10 {
		if resp, body := get(t, "http://"+c.west+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("10 sequential requests opened %d connections to the instance, want 1", n)
	}
	for i := range 5 {
		b.CloseClientConnections() // the instance drops its idle connections
		if resp, body := get(t, "http://"+c.west+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after the instance closed its connections: %d %q", i, resp.StatusCode, body)
		}
	}
}

func TestAHeadRequestAndTrailersPassThrough(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "payload")
		}
		w.Header().Set("X-Checksum", "abc123")
	}))
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + c.west + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "payload" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Errorf("GET: body %q trailer %v, want payload with X-Checksum abc123", body, resp.Trailer)
	}
	resp, err = client.Head("http://" + c.west + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
}

// An instance that answers 101 Switching Protocols to a request asking for no upgrade: on both
// fast paths the attempt fails, as ReverseProxy fails it, and is not tried elsewhere; the
// client gets 502, and the connection to the instance, whose bytes after the 101 are no longer
// HTTP, is closed rather than pooled. A request that asks for the upgrade gets the 101.
func TestA101ToARequestAskingForNoUpgradeIsA502AndItsConnectionIsClosed(t *testing.T) {
	var asked atomic.Int32
	closed := make(chan struct{}, 8)
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		asked.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhidden")
		// Whatever the edge sends next is not HTTP to this instance; the copy ends when the
		// edge closes the connection.
		_, _ = io.Copy(io.Discard, br)
		closed <- struct{}{}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, tc := range []struct{ name, raw string }{
		{"a plain GET, which the edge's front serves", "GET /switch HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"a GET left to net/http", "GET /switch HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked.Store(0)
			resp, body := exchangeRaw(t, c.west, tc.raw)
			if resp.StatusCode != http.StatusBadGateway || body != "Bad Gateway\n" || asked.Load() != 1 {
				t.Errorf("answer %s %q after the instance was asked %d time(s), want 502 from one attempt", resp.Status, body, asked.Load())
			}
			if !strings.Contains(c.logs.String(), "switched protocols") {
				t.Error("the edge did not log the switch")
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("the edge kept the connection the instance answered 101 on")
			}
		})
	}
	resp, _ := exchangeRaw(t, c.west, "GET /socket HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "foo" {
		t.Errorf("an upgrade to foo was answered %s %v, want 101 with Upgrade: foo", resp.Status, resp.Header)
	}
}

// A query is forwarded as the client sent it whichever path the request takes: the lean path
// and the fast path copy it, so the ReverseProxy path must not drop what url.ParseQuery cannot
// parse (a ';' separator, a bad escape) as ReverseProxy does by default.
func TestAQueryIsForwardedAsItCameOnEveryPath(t *testing.T) {
	targets := make(chan string, 8)
	addr := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			targets <- req.Method + " " + req.RequestURI
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	c := twoEdges(t, []string{addr}, []string{addr}, "http", "")
	const target = "/q?a=1;b=2&c=%zz&d=4"
	for _, tc := range []struct{ name, method, raw string }{
		{"a plain GET (the lean path)", "GET", "GET " + target + " HTTP/1.1\r\n" + host + "\r\n"},
		{"a GET net/http parses (the fast path)", "GET", "GET " + target + " HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
		{"a POST with a body (ReverseProxy)", "POST", "POST " + target + " HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exchange(t, c.west, tc.raw, []string{tc.method}); len(got) != 1 || got[0] != http.StatusOK {
				t.Fatalf("answered %v, want [200]", got)
			}
			select {
			case got := <-targets:
				if want := tc.method + " " + target; got != want {
					t.Errorf("the instance got %q, want %q", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the instance got nothing")
			}
		})
	}
}

// A backend that resets its connection is one that closed it, on every system: a reused
// connection it reset is retried on a fresh one rather than failing the request.
func TestAConnectionItsPeerResetIsClosedByPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Read(make([]byte, 1)) // once the client's connection is up
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close() // with a RST
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 1))
	if !closedByPeer(err) {
		t.Fatalf("read from a connection its peer reset: %v (%#v), which closedByPeer does not take for closed by the peer", err, err)
	}
}

// An answer with both Transfer-Encoding and Content-Length (RFC 9112 §6.3) fails its attempt
// with 502 on every path, and its connection is never used again: the instance stands in for
// one whose answer's framing a header injected into it made ambiguous, so that the rest of the
// body, as the instance framed it, comes after the edge read the chunked body and would be read
// as the answer to the next request on the connection, another client's.
func TestAnAnswerWithTwoFramingsIsA502AndItsConnectionIsNeverReused(t *testing.T) {
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		ambiguous := false
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			answer := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
			switch {
			case ambiguous:
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nsmuggled"
			case req.URL.Path == "/two-framings":
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 69\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
				ambiguous = true
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, tc := range []struct{ name, first, next string }{
		{"plain GETs, which the edge's front serves",
			"GET /two-framings HTTP/1.1\r\nHost: shop\r\n\r\n", "GET /next HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{"GETs left to net/http (fast path)",
			"GET /two-framings HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n", "GET /next HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n"},
		{"POSTs with a body (ReverseProxy path)",
			"POST /two-framings HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi", "POST /next HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := exchangeRaw(t, c.west, tc.first)
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("an answer with two framings was relayed as %s %q, want 502", resp.Status, body)
			}
			for range 3 {
				if resp, body := exchangeRaw(t, c.west, tc.next); resp.StatusCode != http.StatusOK || body != "ok" {
					t.Fatalf("the next client was answered %s %q, want 200 %q", resp.Status, body, "ok")
				}
			}
		})
	}
	if !strings.Contains(c.logs.String(), errAmbiguousLength.Error()) {
		t.Error("the edge did not log why it answered 502")
	}
}

// BenchmarkProxiedGet is one GET through the edge on a kept-alive connection, to an instance
// answering at once: on the lean path (a plain GET) with an answer the lean path relays as it
// is and with a chunked one it reads through net/http's parser, and on the fast path (a GET
// net/http parsed). cpu-µs/op is the process's CPU per request, the client's and the
// instance's included.
func BenchmarkProxiedGet(b *testing.B) {
	for _, bc := range []struct{ name, req, answer string }{
		{"lean", "GET /a HTTP/1.1\r\nHost: shop\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
		{"lean chunked", "GET /a HTTP/1.1\r\nHost: shop\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{"fast", "GET /a HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w1 := rawInstance(b, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if _, err := io.WriteString(c, bc.answer); err != nil {
						return
					}
				}
			})
			c := twoEdges(b, []string{w1}, []string{w1}, "http", "")
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			req := []byte(bc.req)
			get := &http.Request{Method: http.MethodGet}
			b.ReportAllocs()
			cpu0 := eventstest.ProcessCPU(b)
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, get)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("answered %v, %v", resp, err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((eventstest.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

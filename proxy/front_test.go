package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// variedBackend answers each path in a different shape: sized, sniffed, large, streamed, empty
// and chunked, with trailers, without a body, with an error, closing, after early hints; and on
// /echo with the header fields it received.
func variedBackend(t *testing.T) string {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/typed":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			_, _ = io.WriteString(w, "hello")
		case "/sniffed":
			_, _ = io.WriteString(w, "<html><body>hi</body></html>")
		case "/large":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte(strings.Repeat("0123456789", 20000)))
		case "/streamed":
			_, _ = io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
		case "/empty-chunked":
			w.Header().Set("Content-Type", "text/plain")
			w.(http.Flusher).Flush()
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/no-content":
			w.Header().Set("X-Note", "none")
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/missing":
			http.Error(w, "not here", http.StatusNotFound)
		case "/length-listed", "/long-length-listed":
			// A Connection field naming Content-Length: the field goes, the length it framed
			// stays known.
			body := strings.Repeat("a", 2048) // the most net/http holds back before its head
			if r.URL.Path == "/long-length-listed" {
				body += "b"
			}
			w.Header().Set("Connection", "Content-Length")
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = io.WriteString(w, body)
		case "/closing":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "after hints")
		case "/odd-status":
			w.WriteHeader(599)
			_, _ = io.WriteString(w, "odd")
		case "/echo":
			var lines []string
			for k, vs := range r.Header {
				if k != "Content-Length" {
					lines = append(lines, k+": "+strings.Join(vs, ", "))
				}
			}
			slices.Sort(lines)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = fmt.Fprintf(w, "%s %s host=%s\n%s", r.Method, r.RequestURI, r.Host, strings.Join(lines, "\n"))
		}
	}))
	t.Cleanup(b.Close)
	return b.Listener.Addr().String()
}

// exchange sends raw on a new connection to addr and reads one answer to a GET.
func exchangeRaw(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	return exchangeMethod(t, addr, raw, http.MethodGet)
}

// exchangeMethod sends raw on a new connection to addr and reads one answer to a request of
// method.
func exchangeMethod(t *testing.T, addr, raw, method string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read the answer to %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the body of the answer to %q: %v", raw, err)
	}
	return resp, string(body)
}

// TestPlainGetsAreAnsweredExactlyAsNetHTTPAnswersThem sends each request twice: as a plain GET,
// which the edge's front serves itself, and with a "Content-Length: 0" field, which leaves it to
// net/http. Both answers, and what the instance received, must be the same.
func TestPlainGetsAreAnsweredExactlyAsNetHTTPAnswersThem(t *testing.T) {
	b := variedBackend(t)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b}, []string{e1.Listener.Addr().String()}, "http", "")
	paths := []string{"/typed", "/sniffed", "/large", "/streamed", "/empty-chunked", "/trailer", "/no-content",
		"/not-modified", "/missing", "/length-listed", "/long-length-listed", "/closing", "/hints", "/odd-status", "/echo", "/echo?q=a%20b&r=/x?y",
		"/echo/a!b;c=d/%7Euser", "/echo?"}
	heads := []string{
		"Host: shop.demo.test\r\n",
		"host: shop.demo.test:8080\r\nx-lower: v\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n",
		"Host: shop.demo.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\n",
		"Host: shop.demo.test\r\nConnection: close\r\nX-Empty:\r\nX-Spaced:   a  b  \r\nX-Multi: 1\r\nX-Multi: 2\r\n",
	}
	for _, path := range paths {
		for _, head := range heads {
			lean := "GET " + path + " HTTP/1.1\r\n" + head + "\r\n"
			viaNetHTTP := "GET " + path + " HTTP/1.1\r\n" + head + "Content-Length: 0\r\n\r\n"
			r1, b1 := exchangeRaw(t, c.west, lean)
			r2, b2 := exchangeRaw(t, c.west, viaNetHTTP)
			r1.Header.Del("Date")
			r2.Header.Del("Date")
			if r1.StatusCode != r2.StatusCode || fmt.Sprint(r1.Header) != fmt.Sprint(r2.Header) ||
				fmt.Sprint(r1.Trailer) != fmt.Sprint(r2.Trailer) || b1 != b2 || r1.Close != r2.Close ||
				fmt.Sprint(r1.TransferEncoding) != fmt.Sprint(r2.TransferEncoding) || r1.ContentLength != r2.ContentLength {
				t.Errorf("%q:\nplain GET: %d %v %v close=%v te=%v cl=%d %q\nnet/http:  %d %v %v close=%v te=%v cl=%d %q", lean,
					r1.StatusCode, r1.Header, r1.Trailer, r1.Close, r1.TransferEncoding, r1.ContentLength, b1,
					r2.StatusCode, r2.Header, r2.Trailer, r2.Close, r2.TransferEncoding, r2.ContentLength, b2)
			}
		}
	}
}

// TestAHeadIsAnsweredAsReverseProxyAnswersIt sends a GET and a HEAD of each answer's shape on
// the fast paths (the lean one takes the GET, the fast one the HEAD), on the ReverseProxy path
// (with a body) and to httputil.ReverseProxy itself: every answer must be the reference's. An
// answer whose Connection names Content-Length keeps its length in a GET of up to 2 KiB, which
// net/http counts as it relays the body; a HEAD's has no body to count, and the field, hop by hop
// (RFC 9110 §7.6.1), goes: the HEAD is answered without a length (which RFC 9110 §9.3.2 lets a
// server omit, and §8.6 forbids unless it is the GET's), on every path as by ReverseProxy.
func TestAHeadIsAnsweredAsReverseProxyAnswersIt(t *testing.T) {
	// Each answer's fields, and its body when a GET asked for it.
	answers := map[string][2]string{
		"/sized":              {"Content-Type: text/plain\r\nContent-Length: 5\r\n", "hello"},
		"/length-listed":      {"Connection: Content-Length\r\nContent-Type: text/plain\r\nContent-Length: 2048\r\n", strings.Repeat("a", 2048)},
		"/long-length-listed": {"Connection: Content-Length\r\nContent-Type: text/plain\r\nContent-Length: 2049\r\n", strings.Repeat("a", 2049)},
		"/chunked":            {"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"},
	}
	instance := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			a := answers[req.URL.Path]
			out := "HTTP/1.1 200 OK\r\n" + a[0] + "\r\n"
			if req.Method == http.MethodGet {
				out += a[1]
			}
			if _, err := io.WriteString(c, out); err != nil {
				return
			}
		}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{instance}, []string{e1.Listener.Addr().String()}, "http", "")
	ref := referenceProxy(t, instance)
	show := func(r *http.Response, body string) string {
		r.Header.Del("Date")
		return fmt.Sprintf("%d %v te=%v cl=%d close=%v %d bytes", r.StatusCode, r.Header, r.TransferEncoding, r.ContentLength, r.Close, len(body))
	}
	for path := range answers {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			want := show(exchangeMethod(t, ref, method+" "+path+" HTTP/1.1\r\n"+host+"\r\n", method))
			for _, tc := range []struct{ name, addr, raw string }{
				{"a fast path", c.west, method + " " + path + " HTTP/1.1\r\n" + host + "\r\n"},
				{"the ReverseProxy path", c.west, method + " " + path + " HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\nx"},
			} {
				if got := show(exchangeMethod(t, tc.addr, tc.raw, method)); got != want {
					t.Errorf("%s %s on %s: %s\nReverseProxy: %s", method, path, tc.name, got, want)
				}
			}
		}
	}
}

func TestAConnectionMixesPlainGetsWithOtherRequestsAndPipelinedOnes(t *testing.T) {
	e0, e1 := backend(t, "e0"), backend(t, "e1")
	c := twoEdges(t, []string{e0.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Two pipelined GETs, a POST with a body, then a GET again, all on one connection.
	_, err = io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: shop\r\n\r\nGET /2 HTTP/1.1\r\nHost: shop\r\n\r\n"+
		"POST /3 HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\n\r\nbody"+
		"GET /4 HTTP/1.1\r\nHost: shop\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	wantAnswers(t, bufio.NewReader(conn), "e0 GET ", "e0 GET ", "e0 POST body", "e0 GET ")
}

// wantAnswers reads one answer per body from br, in order, and wants each a 200 with that body.
func wantAnswers(t *testing.T, br *bufio.Reader, bodies ...string) {
	t.Helper()
	for _, want := range bodies {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("answer %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

func TestMalformedAndUnusualRequestsAreAnsweredByNetHTTP(t *testing.T) {
	e0, e1 := backend(t, "e0"), backend(t, "e1")
	c := twoEdges(t, []string{e0.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, tc := range []struct {
		name, raw string
		status    int
		body      string
	}{
		{"a space in a field name", "GET / HTTP/1.1\r\nHost: shop\r\nBad Name: x\r\n\r\n", 400, ""},
		{"no Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		{"a control character in a value", "GET / HTTP/1.1\r\nHost: shop\r\nX: a\x01b\r\n\r\n", 400, ""},
		{"a bad escape in the path", "GET /%zz HTTP/1.1\r\nHost: shop\r\n\r\n", 400, ""},
		{"bare LF line ends", "GET /lf HTTP/1.1\nHost: shop\n\n", 200, "e0 GET "},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: shop\r\n\r\n", 200, "e0 GET "},
		{"an absolute URL", "GET http://shop/abs HTTP/1.1\r\nHost: shop\r\n\r\n", 200, "e0 GET "},
		{"a head larger than the lean path's buffer", "GET / HTTP/1.1\r\nHost: shop\r\nX-Big: " + strings.Repeat("x", 3*maxLeanHead) + "\r\n\r\n", 200, "e0 GET "},
		{"a ping", "GET / HTTP/1.1\r\nHost: shop\r\n" + HeaderPing + ": 1\r\n\r\n", 204, ""},
	} {
		resp, body := exchangeRaw(t, c.west, tc.raw)
		if resp.StatusCode != tc.status || tc.status == 200 && body != tc.body {
			t.Errorf("%s: answer %d %q, want %d %q", tc.name, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// While a slow answer is awaited, the front watches the client by peeking past the request's
// head, which can move the head within the connection's buffer. A request sent again after
// that (to the next instance, or on a new connection when the pooled one was closed) must
// still be the request the client sent, not the bytes now where its head used to be.
func TestARequestSentAgainAfterASlowFailureIsTheOneTheClientSent(t *testing.T) {
	var mu sync.Mutex
	heads := map[string]int{}
	serve := func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			mu.Lock()
			heads[head.String()]++
			first := heads[head.String()] == 1
			mu.Unlock()
			if strings.HasPrefix(head.String(), "GET /b ") && first {
				// The first time, a slow failure: no answer, then the connection closes.
				time.Sleep(3 * slowAnswer)
				return
			}
			line, _, _ := strings.Cut(head.String(), "\r\n")
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(line))+"\r\n\r\n"+line); err != nil {
				return
			}
		}
	}
	w1, w2 := rawInstance(t, serve), rawInstance(t, serve)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1, w2}, []string{e1.Listener.Addr().String()}, "http", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// A short request, then a longer one pipelined behind it in the same write.
	b := "GET /b HTTP/1.1\r\nHost: shop\r\nX-Pad: " + strings.Repeat("p", 200) + "\r\n\r\n"
	if _, err := io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: shop\r\n\r\n"+b); err != nil {
		t.Fatal(err)
	}
	wantAnswers(t, bufio.NewReader(conn), "GET /a HTTP/1.1", "GET /b HTTP/1.1")
	mu.Lock()
	defer mu.Unlock()
	for h, n := range heads {
		if !strings.HasPrefix(h, "GET /a ") && !strings.HasPrefix(h, "GET /b HTTP/1.1\r\nHost: shop\r\nX-Pad: "+strings.Repeat("p", 200)+"\r\n") {
			t.Errorf("an instance received %d time(s) a request the client never sent: %q", n, h)
		}
	}
}

// An instance that sends 103 Early Hints at once and its answer later than slowAnswer: the
// client gets the 103 at once, and the answer's head may take up to the response_header
// timeout, however early its first byte came.
func TestAnAnswerAfterEarlyHintsMayComeLaterThanASlowAnswer(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			asked.Add(1)
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
			time.Sleep(4 * slowAnswer)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nw1"); err != nil {
				return
			}
		}
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	conn := sendRaw(t, c.west, "GET /hinted HTTP/1.1\r\nHost: shop\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	hints, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil || hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") != "</a.css>; rel=preload" {
		t.Fatalf("the client got %v (%v) first, want the 103 with its Link", hints, err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if body := string(b); resp.StatusCode != http.StatusOK || body != "w1" || asked.Load() != 1 {
		t.Errorf("answer %s %q after the instance was asked %d time(s), want 200 OK %q from its one answer", resp.Status, body, asked.Load(), "w1")
	}
}

// HTTP/2 with prior knowledge opens a connection (RFC 9113 §3.3): net/http serves the preface
// as HTTP/2 at a connection's start only, and later on a connection it serves it to the
// handler as an HTTP/2.0 request, which ReverseProxy forwards as "PRI * HTTP/1.1", then closes
// the connection. The edge serves it as HTTP/2 at the start too, whichever path served the
// requests before, a plain GET the front serves itself included, and later answers it 505 and
// closes the connection, as nginx answers a request line of HTTP/2.0, forwarding nothing.
func TestAnHTTP2PrefaceAfterARequestIsAnswered505(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, newRecorder(t).addr)
	for _, tc := range []struct{ name, raw, want, netHTTP string }{
		{"at the connection's start", http2.ClientPreface, "[] then not HTTP/1", "[] then not HTTP/1"},
		{"after a plain GET", "GET / HTTP/1.1\r\n" + host + "\r\n" + http2.ClientPreface, "[200 505] then closed", "[200 200] then closed"},
		{"after two plain GETs", "GET /1 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n" + http2.ClientPreface, "[200 200 505] then closed", "[200 200 200] then closed"},
		{"after a POST net/http serves", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi" + http2.ClientPreface, "[200 505] then closed", "[200 200] then closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := connectionOutcome(t, c.west, tc.raw), connectionOutcome(t, ref, tc.raw); got != tc.want || want != tc.netHTTP {
				t.Errorf("the edge: %s, want %s; net/http: %s, want %s", got, tc.want, want, tc.netHTTP)
			}
		})
	}
	for _, got := range func() []string { got, _ := rec.take(); return got }() {
		if strings.HasPrefix(got, "PRI ") {
			t.Errorf("the upstream got %q", got)
		}
	}
}

// connectionOutcome sends raw on a new connection to addr and describes what came back: the
// statuses of the HTTP/1 answers, then "closed" when the connection ended, "open" when it stayed
// quiet for a second, or "not HTTP/1" when other bytes (an HTTP/2 frame) came in an answer's place.
func connectionOutcome(t *testing.T, addr, raw string) string {
	t.Helper()
	br := bufio.NewReader(sendRaw(t, addr, raw))
	statuses := []int{}
	for {
		if _, err := br.Peek(1); err != nil {
			if isTimeout(err) {
				return fmt.Sprint(statuses, " then open")
			}
			return fmt.Sprint(statuses, " then closed")
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Sprint(statuses, " then not HTTP/1")
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, resp.StatusCode)
	}
}

// A client that sends its request head slowly (slowloris) holds its connection for at most
// client_header, counted as net/http's server counts it: from the connection's start for its
// first request, from the first byte of a later one. Before, the lean path started the count
// again at the first byte of a first request and again as it handed a head it does not serve
// (one over 8 KiB) to net/http, so such a client held its connection for up to three times
// client_header.
func TestASlowRequestHeadIsCutAfterClientHeaderWhateverPathReadsIt(t *testing.T) {
	const clientHeader = 2 * time.Second
	instance := backend(t, "e1").Listener.Addr().String()
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {client_header: 2s}")
	line := "GET / HTTP/1.1\r\n" + host
	long := "X-Long: " + strings.Repeat("a", 9<<10)
	for _, tc := range []struct {
		name string
		// served is sent first, and answered, on the connection; then, from the moment the
		// head's count starts, silence for pause, then head, then one byte every 100 ms.
		served, head string
		pause        time.Duration
	}{
		{name: "a first head begun late, on the lean path", head: line + "X-Pad: a", pause: 1500 * time.Millisecond},
		{name: "a first head over 8 KiB begun late, handed to net/http", head: line + long, pause: 1500 * time.Millisecond},
		{name: "a later head over 8 KiB, handed to net/http late", served: line + "\r\n", head: line, pause: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			br := bufio.NewReader(conn)
			if tc.served != "" {
				if _, err := io.WriteString(conn, tc.served); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				start = time.Now()
				if _, err := io.WriteString(conn, tc.head); err != nil {
					t.Fatal(err)
				}
				// The rest of a later head, over 8 KiB, comes late: the lean path hands it on then.
				tc.head = long
				tc.pause = 1500 * time.Millisecond
			}
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-time.After(time.Until(start.Add(tc.pause))):
				case <-done:
					return
				}
				if _, err := io.WriteString(conn, tc.head); err != nil {
					return
				}
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-tick.C:
						if _, err := io.WriteString(conn, "a"); err != nil {
							return
						}
					case <-done:
						return
					}
				}
			}()
			_ = conn.SetReadDeadline(start.Add(4 * clientHeader))
			got, _ := io.ReadAll(br)
			if held := time.Since(start); held > clientHeader+clientHeader/4 {
				t.Errorf("the edge held a connection whose head was still coming for %v, want client_header (%v); it sent %q", held.Round(time.Millisecond), clientHeader, got)
			}
		})
	}
	t.Run("a head over 8 KiB that ends within client_header is served", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i, part := range []string{line, long, "\r\n\r\n"} {
			if i > 0 {
				time.Sleep(clientHeader / 3) // the client's pace, not a wait for the edge
			}
			if _, err := io.WriteString(conn, part); err != nil {
				t.Fatal(err)
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(4 * clientHeader))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("got %v, %v; want 200", resp, err)
		}
	})
}

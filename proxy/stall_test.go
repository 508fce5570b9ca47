package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/proxy/route"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stallPart is what a stalling instance sends of an answer's body before it stops.
const stallPart = "the first part of the answer "

// okAnswer is an instance's answer to GET /ok.
const okAnswer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

// stallingInstance answers /ok whole and keeps the connection; any other request it answers
// with a head and stallPart, the first half of the body, in the framing its path names
// (…/sized: typed, with a Content-Length; …/sniffed: untyped, with a Content-Length; else
// chunked), and then sends nothing more: it reads until the edge closes the connection and
// then sends the request ("PUT /body/sized") on released.
func stallingInstance(released chan<- string) func(c net.Conn) {
	return func(c net.Conn) {
		answerRequests(c, func(req *http.Request, br *bufio.Reader) bool {
			switch {
			case strings.HasSuffix(req.URL.Path, "/sized"):
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", 2*len(stallPart), stallPart)
			case strings.HasSuffix(req.URL.Path, "/sniffed"):
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 2*len(stallPart), stallPart)
			default:
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(stallPart), stallPart)
			}
			_, _ = io.Copy(io.Discard, br) // returns when the edge closes the connection
			released <- req.Method + " " + req.URL.Path
			return false
		})
	}
}

// answerRequests reads c's requests in turn and their bodies: it answers /ok with okAnswer
// and hands any other request, and c's reader, to answer, until a read or a write fails or answer
// returns false.
func answerRequests(c net.Conn, answer func(req *http.Request, br *bufio.Reader) bool) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if req.URL.Path == "/ok" {
			if _, err := io.WriteString(c, okAnswer); err != nil {
				return
			}
			continue
		}
		if !answer(req, br) {
			return
		}
	}
}

// h1AfterOK sends a GET /ok on a new connection to addr, reads its answer, then sends raw on the
// same, kept-alive, connection, and reads what comes until the connection ends or wait passes.
// It returns those bytes, how long they took from raw's sending, and whether the connection
// ended (closed or reset) rather than wait passing.
func h1AfterOK(t *testing.T, addr, raw string, wait time.Duration) (got []byte, took time.Duration, ended bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	br := bufio.NewReader(conn)
	_, _ = io.WriteString(conn, "GET /ok HTTP/1.1\r\nHost: shop\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET /ok: %v", err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("GET /ok: %q (%v), want ok", b, err)
	}
	start := time.Now()
	_ = conn.SetDeadline(start.Add(wait))
	_, _ = io.WriteString(conn, raw)
	got, err = io.ReadAll(br)
	return got, time.Since(start), !isTimeout(err)
}

// complete reports whether b holds a whole answer to a request with method.
func complete(b []byte, method string) bool {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), &http.Request{Method: method})
	if err != nil {
		return false
	}
	_, err = io.ReadAll(resp.Body)
	return err == nil
}

// h2Exchange sends one HTTP/2 request with method to path on a new connection to addr, with
// body when it is not nil, and reads its answer until the stream ends or wait passes. It
// returns the answer's data, how long the answer took, and how it ended: "complete" (with the
// stream's end), "reset" (RST_STREAM, or GOAWAY), "closed" (the connection's end) or
// "waiting" (wait passed first).
func h2Exchange(t *testing.T, addr, method, path string, body []byte, wait time.Duration) (data []byte, took time.Duration, how string) {
	t.Helper()
	return h2ExchangeWith(t, addr, method, path, body, nil, wait)
}

// h2ExchangeWith is h2Exchange with the request's fields besides the pseudo-header ones.
func h2ExchangeWith(t *testing.T, addr, method, path string, body []byte, extra [][2]string, wait time.Duration) (data []byte, took time.Duration, how string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(wait))
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "shop"}, {":path", path}}
	if body != nil {
		fields = append(fields, [2]string{"content-length", strconv.Itoa(len(body))})
	}
	for _, f := range append(fields, extra...) {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: body == nil})
	if body != nil {
		_ = fr.WriteData(1, true, body)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if isTimeout(err) {
				return data, time.Since(start), "waiting"
			}
			return data, time.Since(start), "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				return data, time.Since(start), "complete"
			}
		case *http2.DataFrame:
			data = append(data, f.Data()...)
			if f.StreamEnded() {
				return data, time.Since(start), "complete"
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return data, time.Since(start), "reset"
		}
	}
}

// An instance that sends its answer's head and part of its body and then nothing holds neither
// the client nor the edge past response_body, on any path: the client's connection is closed
// (HTTP/1.1) or its stream reset (HTTP/2), never with an answer that looks complete, the
// instance's connection is closed, and the cut is logged and counted.
func TestAnInstanceThatStallsMidBodyIsCutAfterResponseBodyOnEveryPath(t *testing.T) {
	const responseBody = 200 * time.Millisecond
	released := make(chan string, 16)
	w1 := rawInstance(t, stallingInstance(released))
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {response_body: 200ms}")
	cases := []struct {
		name, request string // request: "METHOD /path" as the instance receives it
		raw           string // an HTTP/1.1 request, sent on a connection kept alive after a GET /ok
		h2Body        []byte // over HTTP/2 (raw empty): the request's body, nil for none
	}{
		{name: "lean, relayed as it came", request: "GET /lean/sized", raw: "GET /lean/sized HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{name: "lean, sniffed", request: "GET /lean/sniffed", raw: "GET /lean/sniffed HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{name: "lean, chunked", request: "GET /lean/chunked", raw: "GET /lean/chunked HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{name: "fast path", request: "GET /fast/sized", raw: "GET http://shop/fast/sized HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{name: "fast path, chunked", request: "GET /fast/chunked", raw: "GET http://shop/fast/chunked HTTP/1.1\r\nHost: shop\r\n\r\n"},
		{name: "ReverseProxy", request: "PUT /body/sized", raw: "PUT /body/sized HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi"},
		{name: "ReverseProxy, chunked", request: "PUT /body/chunked", raw: "PUT /body/chunked HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi"},
		{name: "HTTP/2, fast path", request: "GET /h2/sized"},
		{name: "HTTP/2, fast path, chunked", request: "GET /h2/chunked"},
		{name: "HTTP/2, ReverseProxy", request: "PUT /h2/chunked", h2Body: []byte("hi")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path, _ := strings.Cut(tc.request, " ")
			var took time.Duration
			if tc.raw != "" {
				got, d, ended := h1AfterOK(t, c.west, tc.raw, 5*time.Second)
				took = d
				switch {
				case !ended:
					t.Fatalf("the client still waited 5s after its request, having got %q; want its connection closed after response_body (%s)", got, responseBody)
				case complete(got, method):
					t.Errorf("the client got %q, a complete answer; want it cut short", got)
				}
			} else {
				got, d, how := h2Exchange(t, c.west, method, path, tc.h2Body, 5*time.Second)
				took = d
				if how != "reset" {
					t.Fatalf("the stream ended %s after %v with %q, want it reset after response_body (%s)", how, d.Round(time.Millisecond), got, responseBody)
				}
			}
			if took < responseBody || took > 3*time.Second {
				t.Errorf("the client was cut after %v, want once response_body (%s) passed without a byte, within 3s", took.Round(time.Millisecond), responseBody)
			}
			waitReleased(t, released, tc.request, " was cut for response_body")
		})
	}
	if n := testutil.ToFloat64(c.metrics.EdgeTimeouts.WithLabelValues("edge-west", "shop", "response_body")); n != float64(len(cases)) {
		t.Errorf(`detour_edge_timeouts_total{edge="edge-west",app="shop",timeout="response_body"} = %v, want %d`, n, len(cases))
	}
	if logs := c.logs.String(); !strings.Contains(logs, `"timeout":"response_body"`) || !strings.Contains(logs, `"instance":"`+w1+`"`) {
		t.Errorf("no log line names the instance %s and the response_body timeout; the edges logged:\n%s", w1, logs)
	}
}

// tricklingInstance answers /ok whole, and any other request with a body of trickleParts pieces, one every
// interval, in the framing its path names (…/sized: with a Content-Length, else chunked).
func tricklingInstance(interval time.Duration) func(c net.Conn) {
	return func(c net.Conn) {
		answerRequests(c, func(req *http.Request, _ *bufio.Reader) bool {
			var err error
			sized := strings.HasSuffix(req.URL.Path, "/sized")
			if sized {
				_, err = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", trickleParts*len(tricklePart))
			} else {
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			}
			tick := time.NewTicker(interval)
			for i := 0; err == nil && i < trickleParts; i++ {
				<-tick.C
				if sized {
					_, err = io.WriteString(c, tricklePart)
				} else {
					_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(tricklePart), tricklePart)
				}
			}
			tick.Stop()
			if err == nil && !sized {
				_, err = io.WriteString(c, "0\r\n\r\n")
			}
			return err == nil
		})
	}
}

const (
	tricklePart  = "data: tick\n\n"
	trickleParts = 8
)

// A stream that sends something at least once per response_body is never cut, however long it
// lasts, on any path: response_body bounds the wait between two reads, not the answer.
func TestAnAnswerThatTricklesFasterThanResponseBodyIsRelayedWholeOnEveryPath(t *testing.T) {
	const responseBody = 400 * time.Millisecond
	w1 := rawInstance(t, tricklingInstance(responseBody/4))
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {response_body: 400ms}")
	want := strings.Repeat(tricklePart, trickleParts)
	for _, tc := range []struct {
		name, method, path string
		raw                string // an HTTP/1.1 request, sent on a connection kept alive after a GET /ok
		h2Body             []byte // over HTTP/2 (raw empty): the request's body, nil for none
	}{
		{name: "lean, relayed as it came", method: "GET", raw: "GET /lean/sized HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"},
		{name: "lean, chunked", method: "GET", raw: "GET /lean/chunked HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"},
		{name: "fast path", method: "GET", raw: "GET http://shop/fast/sized HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"},
		{name: "fast path, chunked", method: "GET", raw: "GET http://shop/fast/chunked HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"},
		{name: "ReverseProxy", method: "PUT", raw: "PUT /body/sized HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"},
		{name: "ReverseProxy, chunked", method: "PUT", raw: "PUT /body/chunked HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"},
		{name: "HTTP/2, fast path", method: "GET", path: "/h2/chunked"},
		{name: "HTTP/2, ReverseProxy", method: "PUT", path: "/h2/chunked", h2Body: []byte("hi")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != "" {
				got, took, ended := h1AfterOK(t, c.west, tc.raw, 10*time.Second)
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), &http.Request{Method: tc.method})
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
				}
				if !ended || err != nil || string(body) != want {
					t.Errorf("after %v the client got %q (%v), want the whole stream %q", took.Round(time.Millisecond), got, err, want)
				}
				return
			}
			got, took, how := h2Exchange(t, c.west, tc.method, tc.path, tc.h2Body, 10*time.Second)
			if how != "complete" || string(got) != want {
				t.Errorf("after %v the stream ended %s with %q, want it complete with %q", took.Round(time.Millisecond), how, got, want)
			}
		})
	}
}

// lateEnd is a connection whose read, the last of an answer's body, returns only once
// response_body's timer cut it (put its deadline in the past): the instance's last bytes, or
// its closing the connection, and the timer's expiry cross. It returns last, then the end of
// the body.
type lateEnd struct {
	net.Conn
	fired chan struct{}
	once  sync.Once
	last  string
}

func (c *lateEnd) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.once.Do(func() { close(c.fired) })
	}
	return nil
}

func (c *lateEnd) Read(p []byte) (int, error) {
	<-c.fired
	return copy(p, c.last), io.EOF
}

// An answer whose last read returns as response_body expires came whole: its end, with its
// last bytes (a Content-Length or chunked body on the ReverseProxy path) or without (an answer
// delimited by the instance's closing the connection, on the lean and fast paths), is relayed
// as the end, not as a cut, which would break off a complete answer, reset its HTTP/2 stream,
// and log and count a stall that did not happen.
func TestAnAnswerWhoseLastReadReturnsAsResponseBodyExpiresIsNotCut(t *testing.T) {
	a := &app{pol: &policy{}, log: zerolog.Nop(), failures: logs.NewRepeats(time.Second)}
	for _, tc := range []struct{ name, last string }{
		{name: "its last bytes and its end", last: "end"},
		{name: "its end alone", last: ""},
	} {
		for _, path := range []string{"lean and fast paths", "ReverseProxy"} {
			c := &lateEnd{fired: make(chan struct{}), last: tc.last}
			var r io.Reader
			if path == "ReverseProxy" {
				wc := &watchedConn{Conn: c}
				r = newStallBody(io.NopCloser(wc), wc, time.Millisecond, a, route.Target{})
			} else {
				r = &headLimit{c: c, left: math.MaxInt64, body: true, stall: &stallTimer{d: time.Millisecond, c: c}}
			}
			p := make([]byte, 16)
			n, err := r.Read(p)
			if string(p[:n]) != tc.last || err != io.EOF {
				t.Errorf("%s, %s: the read returned %q, %v; want %q and the end (io.EOF)", path, tc.name, p[:n], err, tc.last)
			}
		}
	}
}

// An answer's connection to its instance holds no pending response_body timer once the
// answer's body is relayed, on the lean and fast paths, kept alive or closed: a timer left
// pending held the connection, closed or idle, until it fired, up to response_body (60 s by
// default) later, about 550 bytes a connection (measured), so an instance that closes its
// connection after each answer had the edge hold that much per request for a minute.
func TestAnAnswersConnectionHoldsNoResponseBodyTimerOnceItsBodyIsRelayed(t *testing.T) {
	body := strings.Repeat("x", 64<<10) // read from the connection after the head
	addr := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			closing := strings.HasPrefix(req.URL.Path, "/closing")
			if closing {
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n")
			} else {
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			}
			if strings.HasSuffix(req.URL.Path, "/chunked") {
				_, err = fmt.Fprintf(c, "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			} else {
				_, err = fmt.Fprintf(c, "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
			if err != nil || closing {
				return
			}
		}
	})
	ctx := context.Background()
	noInterim := func(int, http.Header) {}
	for _, path := range []string{"/kept/sized", "/kept/chunked", "/closing/sized", "/closing/chunked"} {
		for _, relay := range []string{"fast path", "lean path"} {
			pool := newConnPool(dialFrom(nil, time.Second), time.Minute, time.Minute)
			r := httptest.NewRequest(http.MethodGet, "http://shop"+path, nil)
			head := func(bw *bufio.Writer) { writeHead(bw, r, addr, &forwarding{}, "", false) }
			var uc *upConn
			if relay == "fast path" {
				resp, c, err := pool.exchange(ctx, addr, head, r, 5*time.Second, true, noInterim)
				if err != nil {
					t.Fatal(err)
				}
				uc = c
				if err := (&app{}).relay(httptest.NewRecorder(), r, resp, uc, pool, addr, func() bool { return true }); err != nil {
					t.Fatalf("%s %s: %v", relay, path, err)
				}
			} else {
				c, err := pool.send(ctx, addr, head, 5*time.Second, true, nil)
				if err != nil {
					t.Fatal(err)
				}
				uc = c
				lc := &leanConn{bw: bufio.NewWriter(io.Discard), closing: new(atomic.Bool)}
				n, err := peekHead(uc.br)
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := uc.br.Peek(n); parseRespHead(b, &lc.resp) { // relayed as it came
					uc.headRead()
					_, err = lc.relayPlain(uc, n, pool, addr)
				} else {
					var resp *http.Response
					if resp, err = uc.readFinal(ctx, leanGet, noInterim); err != nil {
						t.Fatal(err)
					}
					_, err = lc.relay(resp, uc, pool, addr)
				}
				if err != nil {
					t.Fatalf("%s %s: %v", relay, path, err)
				}
			}
			if uc.limit.stall.t == nil {
				t.Fatalf("%s %s: the body was relayed without a read bounded by response_body", relay, path)
			}
			if uc.limit.stall.t.Stop() {
				t.Errorf("%s %s: once the body was relayed, the connection's response_body timer was still pending", relay, path)
			}
			pool.closeIdle()
		}
	}
}

// crossingConn is an instance's connection whose read deadline is kept, not applied: a read
// fails at once while it is in the past, as a net.Conn's does, except the one read held
// (hold), which waits until the deadline is put in the past and then reads what the instance
// sends, released (sent) by then: the answer's last bytes arriving as response_body's timer
// fires, the read they end under way.
type crossingConn struct {
	net.Conn
	mu       sync.Mutex
	deadline time.Time
	hold     bool
	cut      chan struct{} // closed once the deadline is put in the past
	sent     chan struct{} // closed to let the instance send the rest of its answer
	once     sync.Once
}

func (c *crossingConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if !t.IsZero() && t.Before(time.Now()) {
		c.once.Do(func() { close(c.cut) })
	}
	return nil
}

func (c *crossingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	hold, deadline := c.hold, c.deadline
	c.hold = false
	c.mu.Unlock()
	if hold {
		<-c.cut
		close(c.sent)
		return c.Conn.Read(p)
	}
	if !deadline.IsZero() && deadline.Before(time.Now()) {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return c.Conn.Read(p)
}

// On the ReverseProxy path, an answer whose last bytes arrive as response_body expires leaves
// its connection to the instance as it found it: the transport, which keeps the connection for
// the next request once it read the answer's end, got it with its reads cut (a read deadline
// in the past), and the next request sent on it failed (502), or it was closed unused.
func TestAnAnswerWhoseLastBytesArriveAsResponseBodyExpiresLeavesItsConnectionToTheNextRequest(t *testing.T) {
	sent := make(chan struct{})
	addr := rawInstance(t, func(c net.Conn) {
		answerRequests(c, func(*http.Request, *bufio.Reader) bool {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n")
			<-sent
			_, err := io.WriteString(c, "hello")
			return err == nil
		})
	})
	var cc *crossingConn
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc = &crossingConn{Conn: c, cut: make(chan struct{}), sent: sent}
		return &watchedConn{Conn: cc}, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	a := &app{pol: &policy{}, log: zerolog.Nop(), failures: logs.NewRepeats(time.Second)}
	put := func(path string) (body string, reused bool, err error) {
		var wc *watchedConn
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			wc, _ = info.Conn.(*watchedConn)
			reused = info.Reused
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPut, "http://"+addr+path, strings.NewReader("hi"))
		res, err := tr.RoundTrip(req)
		if err != nil {
			return "", reused, err
		}
		// As RoundTrip bounds the body.
		res.Body = newStallBody(res.Body, wc, time.Millisecond, a, route.Target{Addr: addr})
		defer res.Body.Close()
		cc.mu.Lock()
		cc.hold = path == "/crossing"
		cc.mu.Unlock()
		b, err := io.ReadAll(res.Body)
		return string(b), reused, err
	}
	if body, _, err := put("/crossing"); body != "hello" || err != nil {
		t.Fatalf("the answer whose last bytes crossed response_body was read as %q (%v), want it whole (hello)", body, err)
	}
	if body, reused, err := put("/ok"); body != "ok" || err != nil || !reused {
		t.Errorf("the next request was answered %q (%v) on a connection reused: %v; want ok, on the connection the answer came on", body, err, reused)
	}
}

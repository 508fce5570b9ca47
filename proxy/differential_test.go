package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// recorder is an upstream that records the framing and Host of every request it receives and answers
// by path: /204, /304, /1xx (103 then 200), /101 (101 Switching Protocols, though no upgrade is
// asked for, then a 200 in what is no longer HTTP; when one is, the rest of the connection is
// the new protocol's), /099 (a status under 100, which net/http's
// ReadResponse takes), /two-framings (Transfer-Encoding and Content-Length), /trailers (chunked with a trailer), /close (and closes), /short (shorter than its Content-Length, and closes), /204-body, /long, /untyped-long
// and /chunked-long (followed by an unsolicited answer), /paused (chunked, its body pausing
// after its head and first chunk: 200 ms, or as newRecorderPausing says), else 200 "ok".
// bad collects what net/http's server would refuse of what it received.
type recorder struct {
	addr string
	mu   sync.Mutex
	got  []string
	bad  []string
}

func newRecorder(tb testing.TB) *recorder {
	return newRecorderPausing(tb, 4*slowAnswer)
}

// newRecorderPausing is newRecorder with the pause of its /paused answer, none when 0.
func newRecorderPausing(tb testing.TB, pause time.Duration) *recorder {
	rec := &recorder{}
	rec.addr = rawInstance(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				// Only the connection's own errors end it quietly: a *url.Error, which a malformed
				// target gives, is a net.Error too.
				var oe *net.OpError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) && !errors.As(err, &oe) && !closedByPeer(err) {
					rec.mu.Lock()
					rec.bad = append(rec.bad, err.Error())
					rec.mu.Unlock()
				}
				return
			}
			if !httpguts.ValidHostHeader(req.Host) {
				// As net/http's server refuses it, which ReadRequest does not.
				rec.mu.Lock()
				rec.bad = append(rec.bad, fmt.Sprintf("malformed Host header %q", req.Host))
				rec.mu.Unlock()
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			rec.mu.Lock()
			rec.got = append(rec.got, fmt.Sprintf("%s %s host=%q cl=%d te=%v body=%q underscored=%q hop=%q TE=%q trailer=%q", req.Method, req.URL.Path,
				req.Host, req.ContentLength, req.TransferEncoding, body, underscoredOf(req), req.Header.Values(HeaderForwardedBy), req.Header.Values("Te"), trailerOf(req)))
			rec.mu.Unlock()
			var answer string
			switch req.URL.Path {
			case "/204":
				answer = "HTTP/1.1 204 No Content\r\n\r\n"
			case "/304":
				answer = "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n"
			case "/1xx":
				answer = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
			case "/101":
				answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n" +
					"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
			case "/trailers":
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n"
			case "/204-body":
				answer = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" + unsolicited
			case "/long":
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok" + unsolicited
			case "/untyped-long":
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + unsolicited
			case "/chunked-long":
				answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + unsolicited
			case "/two-framings":
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
			case "/099":
				answer = "HTTP/1.1 099 Weird\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
			case "/close":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
				return
			case "/short":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nok")
				return
			case "/paused":
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"); err != nil {
					return
				}
				time.Sleep(pause) // past the lean path's watch of a slow read, unless 0
				answer = "4\r\nmore\r\n0\r\n\r\n"
			default:
				answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
			if req.URL.Path == "/101" && httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") {
				// Switched as asked: what follows is the new protocol's, not requests.
				_, _ = io.Copy(io.Discard, c)
				return
			}
		}
	})
	return rec
}

// unsolicited is an answer an upstream sends after the one asked for: it must reach nobody.
const unsolicited = "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n"

func (r *recorder) take() (got, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, bad, r.got, r.bad = r.got, r.bad, nil, nil
	return got, bad
}

// referenceProxy is httputil.ReverseProxy in front of upstream, with the edge's limits and a new
// upstream connection per request.
func referenceProxy(t testing.TB, upstream string) string {
	t.Helper()
	u, _ := url.Parse("http://" + upstream)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Its own Transport without keep-alives: an upstream that sends more than its answer (the
	// corpus has several) would otherwise leave it on a pooled connection of the process-wide
	// DefaultTransport, where the next case's request may read it as its answer.
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DisableKeepAlives: true}
	srv := &http.Server{Handler: rp, Protocols: &protocols,
		MaxHeaderBytes: 64<<10 - 4096, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// sendRaw sends raw to addr on a new connection, closed when the test ends, whose reads end
// after a second.
func sendRaw(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	return c
}

// exchange sends raw to addr and returns the statuses of the answers to the requests of
// methods, until the connection ends or an answer does not come within a second.
func exchange(t *testing.T, addr, raw string, methods []string) []int {
	t.Helper()
	return statuses(sendRaw(t, addr, raw), methods)
}

// statuses returns the statuses of the answers read on c to the requests of methods, until the
// connection ends or its read deadline passes.
func statuses(c net.Conn, methods []string) []int {
	br := bufio.NewReader(c)
	var out []int
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		out = append(out, resp.StatusCode)
	}
	return out
}

const host = "Host: shop.demo.test\r\n"

// corpus are the raw requests both proxies get, on a connection the client half-closes after
// them when halfCloses is set. differs names the documented difference, when the edge and
// ReverseProxy must not agree; edge is then what the edge answers and forwards how many of the
// requests upstream.
var corpus = []corpusCase{
	{name: "a plain GET", raw: "GET / HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}},
	{name: "a HEAD", raw: "HEAD / HTTP/1.1\r\n" + host + "\r\n", methods: []string{"HEAD"}},
	{name: "an answer whose body pauses, then a GET", raw: "GET /paused HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "an answer to a POST whose body pauses", raw: "POST /paused HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "a 204 answer", raw: "GET /204 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}},
	{name: "a 304 answer", raw: "GET /304 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}},
	{name: "a 103 before the answer", raw: "GET /1xx HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "a 101 to a GET asking for no upgrade, then a GET", raw: "GET /101 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "a 101 to a DELETE asking for no upgrade, then a GET", raw: "DELETE /101 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"DELETE", "GET"}},
	{name: "an answer with trailers", raw: "GET /trailers HTTP/1.1\r\n" + host + "TE: trailers\r\n\r\n", methods: []string{"GET"}},
	{name: "a TE whose token only holds trailers", raw: "GET /te HTTP/1.1\r\n" + host + "Te: x-no-trailers\r\n\r\n", methods: []string{"GET"}},
	{name: "a TE whose token only holds trailers, to a request net/http serves", raw: "GET /te HTTP/1.1\r\n" + host + "Te: x-no-trailers\r\nContent-Length: 0\r\n\r\n", methods: []string{"GET"}},
	{name: "a TE whose token only holds trailers, to a POST", raw: "POST /te HTTP/1.1\r\n" + host + "Te: trailersx\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "a TE of trailers with a weight, which RFC 9110 §10.1.4 gives it none", raw: "GET /te HTTP/1.1\r\n" + host + "TE: trailers;q=0.5\r\n\r\n", methods: []string{"GET"}},
	{name: "a TE listing trailers among codings, over two fields", raw: "GET /te HTTP/1.1\r\n" + host + "TE: gzip;q=0.5\r\nte:deflate ,\tTRAILERS \r\n\r\n", methods: []string{"GET"}},
	{name: "a TE listing trailers among codings, to a POST", raw: "POST /te HTTP/1.1\r\n" + host + "TE: gzip, Trailers\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "a POST with a body", raw: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", methods: []string{"POST"}},
	{name: "a POST without a body", raw: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", methods: []string{"POST"}},
	{name: "a chunked body with a trailer", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n", methods: []string{"POST"}},
	{name: "a chunked body with trailers a header may not be replaced by", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nHost: admin.internal\r\nContent-Length: 99\r\nConnection: close\r\nTransfer-Encoding: gzip\r\nAuthorization: Basic YTpi\r\nDetour-Forwarded-By: edge-east\r\n\r\n", methods: []string{"POST"}},
	{name: "a chunked body with declared trailers a header may not be replaced by", raw: "POST /c HTTP/1.1\r\n" + host + "Trailer: X-Sum, X-Forwarded-For, Host, Authorization\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\nX-Forwarded-For: 6.6.6.6\r\nHost: admin.internal\r\nAuthorization: Basic YTpi\r\n\r\n", methods: []string{"POST"}, edge: []int{200}, forwards: 1,
		differs: "RFC 9110 §6.5.1: a client's trailers are dropped on every path (the fast paths forward no body), as most intermediaries do; ReverseProxy declares their names upstream (Trailer: Authorization,Host,…) and sends none of their values"},
	{name: "Content-Length and Transfer-Encoding", raw: "POST /smuggle HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", methods: []string{"POST"}, edge: []int{400},
		differs: "RFC 9112 §6.3: the edge answers 400 and forwards nothing; net/http drops Content-Length and forwards the chunked body"},
	{name: "two equal Content-Lengths", raw: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", methods: []string{"POST"}},
	{name: "two differing Content-Lengths", raw: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", methods: []string{"POST"}},
	{name: "a transfer coding after chunked", raw: "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n", methods: []string{"POST"}},
	{name: "an obs-fold", raw: "GET /fold HTTP/1.1\r\n" + host + "X-Long: a\r\n b\r\n\r\n", methods: []string{"GET"}, edge: []int{400},
		differs: "RFC 9112 §5.2: the edge answers 400; net/http joins the lines and forwards the request"},
	{name: "bare LF line ends", raw: "GET /lf HTTP/1.1\n" + host[:len(host)-2] + "\n\n", methods: []string{"GET"}},
	{name: "a bare CR in a field", raw: "GET /cr HTTP/1.1\r\n" + host + "X-A: b\rc\r\n\r\n", methods: []string{"GET"}},
	{name: "a head over max_header_bytes", raw: "GET /big HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", methods: []string{"GET"}},
	{name: "a 204 with a body, then a GET", raw: "GET /204-body HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "an answer longer than its Content-Length, then a GET", raw: "GET /long HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "an untyped answer longer than its Content-Length, then a GET", raw: "GET /untyped-long HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "a chunked answer followed by more, then a GET", raw: "GET /chunked-long HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "an answer closing its connection, then a GET", raw: "GET /close HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "an answer shorter than its Content-Length, then a GET", raw: "GET /short HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}, edge: []int{200}, forwards: 1,
		differs: "both close the connection; the edge sends the head and the body as far as it came, net/http drops the answer it buffered"},
	{name: "a HEAD of an answer longer than its Content-Length, then a GET", raw: "HEAD /long HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"HEAD", "GET"}},
	{name: "an Upgrade with a body, answered 101", raw: "POST /101 HTTP/1.1\r\n" + host + "Upgrade: foo\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{502}, forwards: 1,
		differs: "RFC 9110 §7.8: the edge ignores the upgrade of a request with a body, whose switch could come before the body did, so a 101 is an answer to a request that asked for none; ReverseProxy relays it and tunnels"},
	{name: "an Upgrade with a body, answered 200, then a GET", raw: "POST /p HTTP/1.1\r\n" + host + "Upgrade: foo\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}},
	{name: "a chunked Upgrade, answered 101", raw: "POST /101 HTTP/1.1\r\n" + host + "Upgrade: foo\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", methods: []string{"POST"}, edge: []int{502}, forwards: 1,
		differs: "RFC 9110 §7.8: the edge ignores the upgrade of a request with a body, whose switch could come before the body did, so a 101 is an answer to a request that asked for none; ReverseProxy relays it and tunnels"},
	{name: "a chunked body with extensions", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0;e\r\n\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}},
	{name: "a malformed chunk size", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}, edge: []int{400},
		differs: "the client's error, answered 400; ReverseProxy answers 502"},
	{name: "a chunk line ending in a bare LF before a smuggled request", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n2\nGET /smuggled HTTP/1.1\r\n" + host + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", methods: []string{"POST", "GET"}, edge: []int{400},
		differs: "the client's error, answered 400, and the connection closed: served full duplex, net/http would read what follows the malformed line as the next request; ReverseProxy answers 502"},
	{name: "a chunked body whose trailer ends in a bare LF, then a half-close", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n", methods: []string{"POST"}, halfCloses: true, edge: []int{400},
		differs: "the client's error, answered 400 as any chunked body net/http cannot read to its end: net/http reads past a trailer that does not end in CRLF CRLF, finds the client's end, and gives up on the body; ReverseProxy answers 502"},
	{name: "a chunked body whose trailer ends in a bare LF, then blank lines", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n\r\n\r\n", methods: []string{"POST"}},
	{name: "a chunked body whose trailer field ends in a bare LF, then a blank line", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\n\r\n\r\n", methods: []string{"POST"}},
	{name: "a chunk size of 17 digits", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}, edge: []int{400},
		differs: "the client's error, answered 400; ReverseProxy answers 502"},
	{name: "a body longer than its Content-Length", raw: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}},
	{name: "a GET with a body", raw: "GET /g HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "pipelined GETs", raw: "GET /1 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}},
	{name: "a pipelined POST between GETs", raw: "GET /1 HTTP/1.1\r\n" + host + "\r\nPOST /2 HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "POST", "GET"}},
	{name: "a smuggling attempt after a plain GET", raw: "GET /1 HTTP/1.1\r\n" + host + "\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "POST", "GET"}, edge: []int{200, 400}, forwards: 1,
		differs: "RFC 9112 §6.3: the edge answers the second request 400 and closes; net/http forwards all three"},
	{name: "a smuggling attempt after an Upgrade the upstream ignores", raw: "GET /1 HTTP/1.1\r\n" + host + "Upgrade: foo\r\n\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "POST", "GET"}, edge: []int{200}, forwards: 1,
		differs: "the bytes after an Upgrade are not checked, so when the answer is not 101 the edge closes the connection; net/http forwards all three"},
	{name: "a smuggling attempt after a CONNECT the upstream answers 200", raw: "CONNECT shop.demo.test:80 HTTP/1.1\r\n" + host + "\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"CONNECT", "POST", "GET"}, edge: []int{200, 400}, forwards: 1,
		differs: "RFC 9112 §6.3: ReverseProxy relays the answer to a CONNECT as any other and net/http reads HTTP/1.1 after it, so the edge answers the second request 400 and closes; net/http forwards all three"},
	{name: "a smuggling attempt after a PRI * HTTP/2.0 with fields", raw: "PRI * HTTP/2.0\r\n" + host + "\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"PRI", "POST", "GET"}, edge: []int{505}, forwards: 0,
		differs: "RFC 9112 §2.3, RFC 9113 §3.3: net/http serves a PRI * HTTP/2.0 head with a field as an HTTP/2.0 request and reads on; the edge answers it 505 and closes the connection, as nginx answers a request line of HTTP/2.0; net/http forwards all three"},
	{name: "a smuggling attempt after a POST", raw: "POST /1 HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "POST", "GET"}, edge: []int{200, 400}, forwards: 1,
		differs: "RFC 9112 §6.3: the edge answers the first request as the upstream does, the second 400, and closes; net/http forwards all three"},
	{name: "a smuggling attempt after a GET net/http serves", raw: "GET /1 HTTP/1.1\r\n" + host + "Expect: 100-continue\r\n\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "POST", "GET"}, edge: []int{200, 400}, forwards: 1,
		differs: "RFC 9112 §6.3: the edge answers the first request as the upstream does, the second 400, and closes; net/http forwards all three"},
	{name: "a smuggling attempt after an HTTP/1.0 Transfer-Encoding", raw: "GET /1 HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: x\r\n\r\nPOST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "POST", "GET"}, edge: []int{400},
		differs: "RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing: the edge answers 400 and closes; net/http ignores the field and forwards all three"},
	{name: "an absolute-form target naming another host than Host", raw: "GET http://other.test/abs?q=1 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}},
	{name: "a POST to an absolute-form target naming another host than Host", raw: "POST http://other.test/abs HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "an absolute-form target with a malformed host", raw: "GET http://a\"b/abs HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}, edge: []int{400},
		differs: "RFC 9112 §3.2.2: the target's host replaces Host, and the edge refuses a malformed one as net/http refuses a malformed Host; ReverseProxy's transport sends an empty Host in its place"},
	{name: "a POST to an absolute-form target with a malformed host", raw: "POST http://a\"b/abs HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{400},
		differs: "RFC 9112 §3.2.2: the target's host replaces Host, and the edge refuses a malformed one as net/http refuses a malformed Host; ReverseProxy's transport sends an empty Host in its place"},
	{name: "an absolute-form target with a non-ASCII host", raw: "GET http://\xc3\xb6.test/abs HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}, edge: []int{400},
		differs: "RFC 9112 §3.2.2: the target's host replaces Host, and the edge refuses a malformed one as net/http refuses a malformed Host; ReverseProxy's transport sends it as punycode"},
	{name: "an IPv6 zone in Host", raw: "GET /z HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\n\r\n", methods: []string{"GET"}, edge: []int{400},
		differs: "RFC 3986 §3.2.2 has no zone in a host: the edge refuses it; ReverseProxy's transport drops the zone from the Host it sends"},
	{name: "a POST with an IPv6 zone in Host", raw: "POST /z HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{400},
		differs: "RFC 3986 §3.2.2 has no zone in a host: the edge refuses it; ReverseProxy's transport drops the zone from the Host it sends"},
	{name: "an IPv6 zone in an absolute-form target", raw: "GET http://[fe80::1%25eth0]/z HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET"}, edge: []int{400},
		differs: "RFC 3986 §3.2.2 has no zone in a host: the edge refuses it; ReverseProxy's transport drops the zone from the Host it sends"},
	{name: "a GET of a target in authority form", raw: "GET other.test:80 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}, edge: []int{400, 200}, forwards: 1,
		differs: "RFC 9112 §3.2.3: the authority form is for CONNECT only, so the edge refuses it; ReverseProxy forwards the target as \"80\", which no server reads"},
	{name: "a POST of a target in authority form", raw: "POST other.test:80 HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{400},
		differs: "RFC 9112 §3.2.3: the authority form is for CONNECT only, so the edge refuses it; ReverseProxy forwards the target as \"80\", which no server reads"},
	{name: "a field name with an underscore", raw: "GET /u HTTP/1.1\r\n" + host + "X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n\r\n", methods: []string{"GET"}, edge: []int{200}, forwards: 1,
		differs: "the edge drops a request field whose name holds an underscore, as nginx does (underscores_in_headers): a gateway folding '-' and '_' (CGI's HTTP_X_FORWARDED_FOR) would take it for the edge's X-Forwarded-For; ReverseProxy forwards it"},
	{name: "a POST with a field name with an underscore", raw: "POST /u HTTP/1.1\r\n" + host + "X_Forwarded_For: 6.6.6.6\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{200}, forwards: 1,
		differs: "the edge drops a request field whose name holds an underscore, as nginx does (underscores_in_headers): a gateway folding '-' and '_' (CGI's HTTP_X_FORWARDED_FOR) would take it for the edge's X-Forwarded-For; ReverseProxy forwards it"},
	{name: "a client's Detour-Forwarded-By", raw: "GET /hop HTTP/1.1\r\n" + host + "Detour-Forwarded-By: edge-east, edge-west\r\n\r\n", methods: []string{"GET"}, edge: []int{200}, forwards: 1,
		differs: "the edge drops a Detour-Forwarded-By from an address no configured edge has (a client's) on every path, so no client passes for an edge with the instance; ReverseProxy forwards it"},
	{name: "a POST with a client's Detour-Forwarded-By", raw: "POST /hop HTTP/1.1\r\n" + host + "Detour-Forwarded-By: edge-east\r\nDetour-Forwarded-By: x\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}, edge: []int{200}, forwards: 1,
		differs: "the edge drops a Detour-Forwarded-By from an address no configured edge has (a client's) on every path, so no client passes for an edge with the instance; ReverseProxy forwards it"},
	{name: "a chunked POST of HTTP 1.2, which net/http serves as 1.1", raw: "POST /v12 HTTP/1.2\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", methods: []string{"POST"}},
	{name: "an HTTP/1.0 GET without Host", raw: "GET /h10 HTTP/1.0\r\n\r\n", methods: []string{"GET"}},
	{name: "an HTTP/1.0 POST without Host", raw: "POST /h10 HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "an empty Host", raw: "GET /empty HTTP/1.1\r\nHost:\r\n\r\n", methods: []string{"GET"}},
	{name: "a POST with an empty Host", raw: "POST /empty HTTP/1.1\r\nHost:\r\nContent-Length: 2\r\n\r\nhi", methods: []string{"POST"}},
	{name: "an answer with a status under 100, then a GET", raw: "GET /099 HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}, edge: []int{502, 200}, forwards: 2,
		differs: "RFC 9110 §15: a status is 100 to 599, so the edge answers 502; ReverseProxy panics writing it and drops the connection"},
	{name: "an answer with a status under 100 to a request net/http serves, then a GET", raw: "GET /099 HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}, edge: []int{502, 200}, forwards: 2,
		differs: "RFC 9110 §15: a status is 100 to 599, so the edge answers 502; ReverseProxy panics writing it and drops the connection"},
	{name: "an answer with a status under 100 to a POST, then a GET", raw: "POST /099 HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}, edge: []int{502, 200}, forwards: 2,
		differs: "RFC 9110 §15: a status is 100 to 599, so the edge answers 502; ReverseProxy panics writing it and drops the connection"},
	{name: "an answer with both Transfer-Encoding and Content-Length, then a GET", raw: "GET /two-framings HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"GET", "GET"}, edge: []int{502, 200}, forwards: 2,
		differs: "RFC 9112 §6.3: two framings are an error, so the edge answers 502 as nginx does; ReverseProxy relays the chunked body"},
	{name: "an answer with both Transfer-Encoding and Content-Length to a POST, then a GET", raw: "POST /two-framings HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n" + host + "\r\n", methods: []string{"POST", "GET"}, edge: []int{502, 200}, forwards: 2,
		differs: "RFC 9112 §6.3: two framings are an error, so the edge answers 502 as nginx does; ReverseProxy relays the chunked body"},
}

// corpusCase is a case of the differential test (see corpus).
type corpusCase struct {
	name, raw  string
	methods    []string
	halfCloses bool
	differs    string
	edge       []int
	forwards   int
}

// unseeded are cases of the differential test kept from the fuzz targets' seeds, which corpus
// is: as a seed, the one here (over 8 KiB, for the lean path's watch, which FuzzEdge's
// instance never makes wait) cut their execs in 30 s on one worker from 19,590 to 521
// (FuzzEdge) and from 53,857 to 1,533 (FuzzGuard).
var unseeded = []corpusCase{
	{name: "an answer whose body pauses, then a GET longer than the lean path's buffer", raw: "GET /paused HTTP/1.1\r\n" + host + "\r\nGET /2 HTTP/1.1\r\n" + host + "X-Pad: " + strings.Repeat("p", maxLeanHead) + "\r\n\r\n", methods: []string{"GET", "GET"}},
}

func TestTheEdgeFramesRequestsAsReverseProxyDoesOrAsDocumented(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range slices.Concat(corpus, unseeded) {
		t.Run(tc.name, func(t *testing.T) {
			send := sendRaw
			if tc.halfCloses {
				send = sendHalfClosed
			}
			rec.take()
			edgeStatus := statuses(send(t, c.west, tc.raw), tc.methods)
			edgeGot, edgeBad := rec.take()
			refStatus := statuses(send(t, ref, tc.raw), tc.methods)
			refGot, _ := rec.take()
			if len(edgeBad) > 0 {
				t.Errorf("the upstream refused what the edge sent: %q", edgeBad)
			}
			same := fmt.Sprint(edgeStatus) == fmt.Sprint(refStatus) && fmt.Sprint(edgeGot) == fmt.Sprint(refGot)
			switch {
			case tc.differs == "" && !same:
				t.Errorf("edge: %v, upstream got %q\nReverseProxy: %v, upstream got %q", edgeStatus, edgeGot, refStatus, refGot)
			case tc.differs != "":
				if fmt.Sprint(edgeStatus) != fmt.Sprint(tc.edge) || len(edgeGot) != tc.forwards || same {
					t.Errorf("edge answered %v and forwarded %q, want %v and %d request(s); ReverseProxy answered %v and forwarded %q (%s)",
						edgeStatus, edgeGot, tc.edge, tc.forwards, refStatus, refGot, tc.differs)
				}
			}
		})
	}
}

// Only PRI * HTTP/2.0 opens HTTP/2; a PRI request of HTTP/1.1 is served as any other, and the
// requests after it on the connection are checked as well.
func TestARequestAfterAnHTTP11PriIsStillChecked(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	for _, step := range []struct {
		raw, method string
		want        int
	}{
		{"PRI /1 HTTP/1.1\r\n" + host + "\r\n", "PRI", http.StatusOK},
		{"POST /2 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", "POST", http.StatusBadRequest},
	} {
		if _, err := io.WriteString(conn, step.raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: step.method})
		if err != nil {
			t.Fatalf("%s: %v", step.method, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != step.want {
			t.Errorf("%s: %d, want %d", step.method, resp.StatusCode, step.want)
		}
	}
	if got, _ := rec.take(); len(got) != 1 {
		t.Errorf("the upstream got %q, want the PRI request only", got)
	}
}

// h2cRequest sends one HTTP/2 request with prior knowledge to addr: headers with the fields
// given (a :path or :authority among them replaces the default one), then data, ending the
// stream with the headers when data is nil. It returns the status answered, or 0 for a stream
// reset.
func h2cRequest(t testing.TB, addr, method string, fields [][2]string, data []byte) int {
	t.Helper()
	return h2cRequestWithTrailers(t, addr, method, fields, data, nil)
}

// h2cRequestWithTrailers is h2cRequest, ending the stream with trailers when there are any.
func h2cRequestWithTrailers(t testing.TB, addr, method string, fields [][2]string, data []byte, trailers [][2]string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	pseudo := [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "shop.demo.test"}, {":path", "/h2"}}
	var regular [][2]string
	for _, f := range fields {
		if i := slices.IndexFunc(pseudo, func(p [2]string) bool { return p[0] == f[0] }); i >= 0 {
			pseudo[i] = f
		} else {
			regular = append(regular, f)
		}
	}
	for _, f := range append(pseudo, regular...) {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: data == nil && trailers == nil})
	if data != nil {
		_ = fr.WriteData(1, trailers == nil, data)
	}
	if trailers != nil {
		hb.Reset()
		for _, f := range trailers {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					var code int
					_, _ = fmt.Sscan(hf.Value, &code)
					return code
				}
			}
		case *http2.RSTStreamFrame:
			return 0
		case *http2.GoAwayFrame:
			return 0
		}
	}
}

// A client's trailers reach no instance, whichever path an HTTP/2 request takes: the fast path
// for one whose content-length is 0, the ReverseProxy path for one with data.
func TestAnHTTP2RequestsTrailersAreDroppedOnEveryPath(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	trailers := [][2]string{{"x-sum", "5"}, {"x-forwarded-for", "6.6.6.6"}}
	for _, tc := range []struct {
		name   string
		fields [][2]string
		data   []byte
	}{
		{"no data, content-length 0", [][2]string{{"content-length", "0"}, {"trailer", "x-sum, x-forwarded-for"}}, nil},
		{"data", [][2]string{{"trailer", "x-sum, x-forwarded-for"}}, []byte("hello")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			code := h2cRequestWithTrailers(t, c.west, "POST", tc.fields, tc.data, trailers)
			got, bad := rec.take()
			if code != http.StatusOK || len(bad) > 0 || len(got) != 1 || !strings.HasSuffix(got[0], `trailer=""`) {
				t.Errorf("answered %d; the upstream got %q (refused %q), want one request without trailers", code, got, bad)
			}
		})
	}
}

func TestAnHTTP2RequestWhoseBodyBelieContentLengthIsRefused(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range []struct {
		name    string
		method  string
		fields  [][2]string
		data    []byte
		want    int
		sent    bool
		differs string // why ReverseProxy answers otherwise, when it does
	}{
		{name: "a GET", method: "GET", want: 200, sent: true},
		{name: "a POST with its declared body", method: "POST", fields: [][2]string{{"content-length", "5"}}, data: []byte("hello"), want: 200, sent: true},
		{name: "a GET declaring a body it does not send", method: "GET", fields: [][2]string{{"content-length", "10"}}, want: 400,
			differs: "RFC 9113 §8.1.1: the request is malformed; ReverseProxy forwards it without its content-length"},
		{name: "a GET whose content-length of 0 has a sign", method: "GET", fields: [][2]string{{"content-length", "+0"}}, want: 400,
			differs: "RFC 9110 §8.6: a content-length is digits only, as net/http reads it over HTTP/1.1; ReverseProxy forwards it without its content-length"},
		{name: "a POST whose body is shorter than declared", method: "POST", fields: [][2]string{{"content-length", "10"}}, data: []byte("hello"), want: 400,
			differs: "RFC 9113 §8.1.1: the client's error, answered 400; ReverseProxy answers 502"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			got := h2cRequest(t, c.west, tc.method, tc.fields, tc.data)
			if got != tc.want {
				t.Errorf("answered %d, want %d", got, tc.want)
			}
			reqs, bad := rec.take()
			if len(bad) > 0 || tc.sent != (len(reqs) == 1) || !tc.sent && len(reqs) > 0 {
				t.Errorf("upstream got %q (refused %q), want a request: %v", reqs, bad, tc.sent)
			}
			refGot := h2cRequest(t, ref, tc.method, tc.fields, tc.data)
			refReqs, _ := rec.take()
			t.Logf("edge: %d, upstream got %q; ReverseProxy: %d, upstream got %q", got, reqs, refGot, refReqs)
			same := refGot == got && fmt.Sprint(refReqs) == fmt.Sprint(reqs)
			if same == (tc.differs != "") {
				t.Errorf("edge: %d, upstream got %q; ReverseProxy: %d, upstream got %q; documented difference: %q", got, reqs, refGot, refReqs, tc.differs)
			}
		})
	}
}

// An HTTP/2 request's :path must be a request target an HTTP/1.1 request line can carry (RFC
// 9113 §8.3.1: the absolute-path and query of the target, or "*"), and its :authority a valid
// host[:port] without userinfo: the edge refuses any other with 400 (net/http's HTTP/2 server
// resets the stream of some itself) on every path, before any upstream sees it, as net/http
// refuses an HTTP/1.1 request whose target or Host is malformed.
func TestAnHTTP2RequestWithAMalformedPathOrAuthorityIsRefusedOnEveryPath(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range []struct {
		name, path, authority string
		want                  int    // the edge's answer on every path; 0 for a stream reset
		h1                    bool   // an HTTP/1.1 request with this target and Host is refused too (400)
		differs               string // why ReverseProxy answers otherwise, when it does
	}{
		{name: "a plain path", path: "/h2?a=1", authority: "shop.demo.test", want: 200},
		{name: "a host with a port", path: "/h2", authority: "shop.demo.test:8080", want: 200},
		{name: "an IPv6 host", path: "/h2", authority: "[::1]:80", want: 200},
		{name: "a query with characters browsers send unescaped", path: "/h2?a={b}|c^d", authority: "shop.demo.test", want: 200},
		{name: "an asterisk", path: "*", authority: "shop.demo.test", want: 400,
			differs: "RFC 9113 §8.3.1 allows * for OPTIONS only; ReverseProxy forwards /*"},
		{name: "a space in the query", path: "/h2?a b", authority: "shop.demo.test", want: 400, h1: true,
			differs: "ReverseProxy forwards the space, which makes a malformed request line upstream"},
		{name: "a space in the path", path: "/h2 x", authority: "shop.demo.test", want: 400, h1: true,
			differs: "ReverseProxy escapes the space and forwards /h2%20x"},
		{name: "a space and a protocol in the query", path: "/h2?a HTTP/1.1", authority: "shop.demo.test", want: 400, h1: true,
			differs: "ReverseProxy forwards it, which makes a malformed request line upstream"},
		{name: "a target in absolute form", path: "http://other.test/h2", authority: "shop.demo.test", want: 400,
			differs: "ReverseProxy forwards /h2 (RFC 9113 §8.3.1 allows only the path and query)"},
		{name: "a path without its leading slash", path: "h2", authority: "shop.demo.test", want: 0, h1: true},
		{name: "a control character in the path", path: "/h2\x01", authority: "shop.demo.test", want: 0, h1: true},
		{name: "a space in the authority", path: "/h2", authority: "shop demo.test", want: 400, h1: true,
			differs: "ReverseProxy's transport sends an empty Host in its place"},
		{name: "a slash in the authority", path: "/h2", authority: "shop.demo.test/x", want: 400, h1: true,
			differs: "ReverseProxy's transport sends an empty Host in its place"},
		{name: "a quote in the authority", path: "/h2", authority: `shop"demo`, want: 400, h1: true,
			differs: "ReverseProxy's transport sends an empty Host in its place"},
		{name: "a non-ASCII authority", path: "/h2", authority: "shöp.demo.test", want: 400, h1: true,
			differs: "ReverseProxy forwards it as punycode"},
		{name: "userinfo in the authority", path: "/h2", authority: "u@shop.demo.test", want: 0, h1: true},
		{name: "no authority and no host field", path: "/h2", authority: "", want: 200},
		{name: "an IPv6 zone in the authority", path: "/h2", authority: "[fe80::1%25eth0]:80", want: 400, h1: true,
			differs: "RFC 3986 §3.2.2 has no zone in a host; ReverseProxy's transport drops the zone from the Host it sends"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := [][2]string{{":path", tc.path}, {":authority", tc.authority}}
			for _, m := range []struct {
				path, method string
				data         []byte
			}{{"fast path", "GET", nil}, {"ReverseProxy", "POST", []byte("hello")}} {
				rec.take()
				f := fields
				if m.data != nil {
					f = append(f, [2]string{"content-length", strconv.Itoa(len(m.data))})
				}
				got := h2cRequest(t, c.west, m.method, f, m.data)
				reqs, bad := rec.take()
				if got != tc.want || len(bad) > 0 || len(reqs) != btoi(tc.want == 200) {
					t.Errorf("%s: answered %d and forwarded %q (refused upstream: %q), want %d and %d request(s)",
						m.path, got, reqs, bad, tc.want, btoi(tc.want == 200))
				}
				refGot := h2cRequest(t, ref, m.method, f, m.data)
				refReqs, refBad := rec.take()
				same := refGot == got && fmt.Sprint(refReqs) == fmt.Sprint(reqs) && len(refBad) == 0
				if same == (tc.differs != "") {
					t.Errorf("%s: edge: %d, upstream got %q; ReverseProxy: %d, upstream got %q (refused %q); documented difference: %q",
						m.path, got, reqs, refGot, refReqs, refBad, tc.differs)
				}
			}
			if !tc.h1 {
				return
			}
			raw := "GET " + tc.path + " HTTP/1.1\r\nHost: " + tc.authority + "\r\n\r\n"
			if got := exchange(t, c.west, raw, []string{"GET"}); fmt.Sprint(got) != "[400]" {
				t.Errorf("over HTTP/1.1 the edge answered %v, want [400]", got)
			}
			if reqs, _ := rec.take(); len(reqs) > 0 {
				t.Errorf("over HTTP/1.1 the edge forwarded %q", reqs)
			}
		})
	}
}

// An HTTP/2 request whose host field disagrees with its :authority, or that has several host
// fields, is refused with 400 on every path, as nginx does (RFC 9113 §8.3.1: a client must not
// send one, and an intermediary must not forward it as it is): the edge forwards :authority as
// the Host, and a server behind it, or a cache beside it, that reads the host field instead
// would serve another virtual host than the one the request was checked and logged for. Case
// does not matter, as in any host name; a request with a host field and no :authority has that
// host, as net/http's HTTP/2 server reads it.
func TestAnHTTP2RequestWhoseHostDisagreesWithItsAuthorityIsRefusedOnEveryPath(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range []struct {
		name      string
		authority string
		hosts     []string
		want      int    // the edge's answer on every path
		differs   string // why ReverseProxy answers otherwise, when it does
	}{
		{name: "no host field", authority: "shop.demo.test", want: 200},
		{name: "a host field equal to :authority", authority: "shop.demo.test", hosts: []string{"shop.demo.test"}, want: 200},
		{name: "a host field differing in case only", authority: "shop.demo.test", hosts: []string{"Shop.Demo.Test"}, want: 200},
		{name: "a host field and no :authority", authority: "", hosts: []string{"shop.demo.test"}, want: 200},
		{name: "a host field naming another host", authority: "shop.demo.test", hosts: []string{"admin.demo.test"}, want: 400,
			differs: "RFC 9113 §8.3.1: ReverseProxy forwards the request with :authority as its Host"},
		{name: "a host field naming another port", authority: "shop.demo.test", hosts: []string{"shop.demo.test:8080"}, want: 400,
			differs: "RFC 9113 §8.3.1: ReverseProxy forwards the request with :authority as its Host"},
		{name: "a malformed host field", authority: "shop.demo.test", hosts: []string{"shop.demo.test/x"}, want: 400,
			differs: "RFC 9113 §8.3.1: ReverseProxy forwards the request with :authority as its Host"},
		{name: "two host fields equal to :authority", authority: "shop.demo.test", hosts: []string{"shop.demo.test", "shop.demo.test"}, want: 400,
			differs: "ReverseProxy forwards the request with :authority as its Host; net/http refuses two Host fields over HTTP/1.1"},
		{name: "two differing host fields and no :authority", authority: "", hosts: []string{"shop.demo.test", "admin.demo.test"}, want: 400,
			differs: "ReverseProxy forwards the request with the first as its Host; net/http refuses two Host fields over HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []struct {
				path, method string
				data         []byte
			}{{"fast path", "GET", nil}, {"ReverseProxy", "POST", []byte("hello")}} {
				rec.take()
				f := [][2]string{{":authority", tc.authority}}
				for _, h := range tc.hosts {
					f = append(f, [2]string{"host", h})
				}
				if m.data != nil {
					f = append(f, [2]string{"content-length", strconv.Itoa(len(m.data))})
				}
				got := h2cRequest(t, c.west, m.method, f, m.data)
				reqs, bad := rec.take()
				if got != tc.want || len(bad) > 0 || len(reqs) != btoi(tc.want == 200) {
					t.Errorf("%s: answered %d and forwarded %q (refused upstream: %q), want %d and %d request(s)",
						m.path, got, reqs, bad, tc.want, btoi(tc.want == 200))
				}
				refGot := h2cRequest(t, ref, m.method, f, m.data)
				refReqs, refBad := rec.take()
				same := refGot == got && fmt.Sprint(refReqs) == fmt.Sprint(reqs) && len(refBad) == 0
				if same == (tc.differs != "") {
					t.Errorf("%s: edge: %d, upstream got %q; ReverseProxy: %d, upstream got %q (refused %q); documented difference: %q",
						m.path, got, reqs, refGot, refReqs, refBad, tc.differs)
				}
			}
		})
	}
}

// An HTTP/2 request with a connection-specific field (RFC 9113 §8.2.2), a TE other than
// "trailers", an upper-case field name (§8.2.1) or an unknown pseudo-header field (§8.3) is
// malformed: net/http's HTTP/2 server answers it 400 or resets its stream before the edge's
// handler sees it, on every path, as it does in front of ReverseProxy.
func TestAnHTTP2RequestWithAConnectionSpecificFieldIsForwardedNowhere(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range []struct {
		name  string
		field [2]string
		want  int // 0 for a stream reset
	}{
		{name: "connection", field: [2]string{"connection", "keep-alive"}, want: 400},
		{name: "keep-alive", field: [2]string{"keep-alive", "timeout=5"}, want: 400},
		{name: "proxy-connection", field: [2]string{"proxy-connection", "keep-alive"}, want: 400},
		{name: "upgrade", field: [2]string{"upgrade", "websocket"}, want: 400},
		{name: "transfer-encoding", field: [2]string{"transfer-encoding", "chunked"}, want: 400},
		{name: "a TE other than trailers", field: [2]string{"te", "gzip"}, want: 400},
		{name: "a TE listing trailers and more", field: [2]string{"te", "trailers, gzip"}, want: 400},
		{name: "an upper-case field name", field: [2]string{"X-Upper", "a"}, want: 0},
		{name: "an unknown pseudo-header field", field: [2]string{":foo", "a"}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []struct {
				path, method string
				data         []byte
			}{{"fast path", "GET", nil}, {"ReverseProxy", "POST", []byte("hello")}} {
				rec.take()
				f := [][2]string{tc.field}
				if m.data != nil {
					f = append(f, [2]string{"content-length", strconv.Itoa(len(m.data))})
				}
				got := h2cRequest(t, c.west, m.method, f, m.data)
				reqs, bad := rec.take()
				refGot := h2cRequest(t, ref, m.method, f, m.data)
				refReqs, _ := rec.take()
				if got != tc.want || len(reqs) > 0 || len(bad) > 0 || refGot != got || len(refReqs) > 0 {
					t.Errorf("%s: edge answered %d and forwarded %q (refused upstream: %q); ReverseProxy answered %d and forwarded %q; want %d and nothing forwarded",
						m.path, got, reqs, bad, refGot, refReqs, tc.want)
				}
			}
		})
	}
}

// An HTTP/2 request whose :method is not a token (RFC 9110 §9.1), which net/http's HTTP/2
// server lets through, is refused with 400 on every path, as net/http refuses such a method
// over HTTP/1.1: the fast path wrote it into the request line upstream, where a method of "GET
// /admin?" made the target /admin for a server that splits the line at its first and last
// space, while the edge had checked and logged another.
func TestAnHTTP2RequestWhoseMethodIsNoTokenIsRefusedOnEveryPath(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	ref := referenceProxy(t, rec.addr)
	for _, tc := range []struct {
		name, method string
		data         []byte
		want         int
		differs      string // why ReverseProxy answers otherwise, when it does
	}{
		{name: "a token", method: "GET", want: 200},
		{name: "a token with a body", method: "POST", data: []byte("hello"), want: 200},
		{name: "an extension token", method: "PURGE", want: 200},
		{name: "a space and a target", method: "GET /admin?", want: 400,
			differs: "ReverseProxy's transport refuses the method: 502"},
		{name: "a space and a target, with a body", method: "POST /admin?", data: []byte("hello"), want: 400,
			differs: "ReverseProxy's transport refuses the method: 502"},
		{name: "a tab and a target", method: "GET\t/admin", want: 400,
			differs: "ReverseProxy's transport refuses the method: 502"},
		{name: "a separator", method: "G(ET", want: 400,
			differs: "ReverseProxy's transport refuses the method: 502"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			var f [][2]string
			if tc.data != nil {
				f = append(f, [2]string{"content-length", strconv.Itoa(len(tc.data))})
			}
			got := h2cRequest(t, c.west, tc.method, f, tc.data)
			reqs, bad := rec.take()
			if got != tc.want || len(bad) > 0 || len(reqs) != btoi(tc.want == 200) {
				t.Errorf("answered %d and forwarded %q (refused upstream: %q), want %d and %d request(s)",
					got, reqs, bad, tc.want, btoi(tc.want == 200))
			}
			refGot := h2cRequest(t, ref, tc.method, f, tc.data)
			refReqs, refBad := rec.take()
			same := refGot == got && fmt.Sprint(refReqs) == fmt.Sprint(reqs) && len(refBad) == 0
			if same == (tc.differs != "") {
				t.Errorf("edge: %d, upstream got %q; ReverseProxy: %d, upstream got %q (refused %q); documented difference: %q",
					got, reqs, refGot, refReqs, refBad, tc.differs)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzEdgeHTTP2 sends HTTP/2 requests with arbitrary :method (GET, or POST with a body, when
// empty), :path and :authority values and host field (none when empty), with and without a
// body, and fails when the upstream receives a request net/http refuses, or one whose host
// field disagreed with the Host forwarded.
//
// Run it with -fuzzminimizetime 100x, as go tool task fuzz does: its runs wait on no timer (no
// seed asks for the instance's /paused answer, and no run measured took 20 ms), but each is
// an HTTP/2 exchange of a few milliseconds, and Go's default minute of minimising a new input
// over thousands of them left it at 0 execs/s for most of a minute: a planted bug was found
// in 4 s with the cap, and not in 60 s without it.
func FuzzEdgeHTTP2(f *testing.F) {
	rec := newRecorder(f)
	c := twoEdges(f, []string{rec.addr}, []string{rec.addr}, "http", "")
	for _, s := range [][3]string{{"/", "shop", ""}, {"/a?b c", "shop", ""}, {"/a b", "shop", ""}, {"*", "shop:80", ""},
		{"http://x/y", "shop", ""}, {"/", "a b", ""}, {"/", "[::1]:8080", ""}, {"/%zz?%", "a_b.c", ""}, {"/?a#b", "xn--e.test", ""},
		{"/", "shop", "shop"}, {"/", "shop", "SHOP"}, {"/", "shop", "admin"}, {"/", "", "shop"}, {"/", "[fe80::1%25eth0]", ""}} {
		f.Add("", s[0], s[1], s[2], false)
	}
	f.Add("GET /admin?", "/", "shop", "", false)
	f.Add("PURGE", "/", "shop", "", true)
	f.Fuzz(func(t *testing.T, verb, path, authority, hostField string, body bool) {
		fields := [][2]string{{":path", path}, {":authority", authority}}
		if hostField != "" {
			fields = append(fields, [2]string{"host", hostField})
		}
		method, data := "GET", []byte(nil)
		if body {
			method, data = "POST", []byte("hi")
			fields = append(fields, [2]string{"content-length", "2"})
		}
		if verb != "" {
			method = verb
		}
		_ = h2cRequest(t, c.west, method, fields, data)
		got, bad := rec.take()
		if len(bad) > 0 {
			t.Fatalf("the upstream refused what the edge sent for :method %q, :path %q, :authority %q: %q", method, path, authority, bad)
		}
		if len(got) > 0 && hostField != "" && !strings.Contains(strings.ToLower(got[0]), "host="+strings.ToLower(strconv.Quote(hostField))+" ") {
			t.Fatalf("the edge forwarded %q for :authority %q and host field %q", got, authority, hostField)
		}
	})
}

// FuzzBadH2Path holds badH2Path to net/http's HTTP/1.1 server: of the :path values net/http's
// HTTP/2 server accepts, one badH2Path passes is forwarded on a request line net/http reads
// back with the same target, and one it refuses in origin form is refused over HTTP/1.1 too.
func FuzzBadH2Path(f *testing.F) {
	for _, s := range []string{"/", "/a?b", "/a b", "/?a b", "*", "http://x/y", "/%zz?%", "/?a#b", "/\x80?\xff", "//a", "/?a\tb"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, target string, options bool) {
		method := http.MethodGet
		if options {
			method = http.MethodOptions
		}
		if !httpguts.ValidHeaderFieldValue(target) {
			return // net/http's HTTP/2 server resets the stream
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // so does it here
		}
		line := func(target string) string { return method + " " + target + " HTTP/1.1\r\nHost: a\r\n\r\n" }
		if badH2Path(method, target) == "" {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line(u.RequestURI()))))
			if err != nil || r.RequestURI != u.RequestURI() {
				t.Fatalf(":path %q passed, but net/http reads its request line %q as %v (%v)", target, line(u.RequestURI()), r, err)
			}
			return
		}
		if strings.HasPrefix(target, "/") {
			if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line(target)))); err == nil {
				t.Fatalf(":path %q was refused, but net/http accepts it over HTTP/1.1", target)
			}
		}
	})
}

// FuzzEdge sends arbitrary bytes to the edge on a connection it then half-closes, reads all the
// edge answers until it closes the connection, and fails when the instance received a request
// net/http's server refuses, or a field whose name holds an underscore.
//
// Each run must be quick, or the target fuzzes nothing for long stretches: the fuzzer minimises
// every input that found new coverage by running the target on thousands of candidates (up to
// -fuzzminimizetime, a minute), none of which it counts as an exec, and an input that makes the
// edge or the instance wait costs that wait in most of them. So nothing here waits on a timer:
//   - The edge's client_header and client_body are 10ms, not 10s and 60s. All the client sends is
//     there before it half-closes, so they end only waits for bytes that never come, such as the
//     guard's holding back the client's half-close while net/http peeks past a complete request,
//     as it once did after a first head shorter than the 14 bytes of "PRI * HTTP/2.0" (" HTTP/1.1\n\n",
//     then answered 400 after client_header) and after a last chunk whose trailers end in a bare
//     LF ("0\r\n\n", answered 408 after client_body). Such inputs each took the 2 s read deadline
//     below, which an edge now reaches only by hanging.
//   - The instance's /paused answer does not pause: a pause that reaches the lean path's watch
//     of a slow read outlasts slowAnswer (50ms), in every candidate that keeps /paused. The
//     corpus of TestTheEdgeFramesRequestsAsReverseProxyDoesOrAsDocumented holds that watch to
//     net/http instead.
func FuzzEdge(f *testing.F) {
	rec := newRecorderPausing(f, 0)
	c := twoEdgesWith(f, []string{rec.addr}, []string{rec.addr}, "http", "", ", timeouts: {client_header: 10ms, client_body: 10ms}")
	for _, tc := range corpus {
		f.Add([]byte(tc.raw))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n" + host + "\r\n" + http2.ClientPreface))
	f.Add([]byte("GET / HTTP/1.1\r\n" + host + "X_Forwarded_For: 10.0.0.1\r\nX-Real_IP: a\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(raw)
		_ = conn.(*net.TCPConn).CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		_ = conn.Close()
		got, bad := rec.take()
		if len(bad) > 0 {
			t.Fatalf("the upstream refused what the edge sent for %q: %q", raw, bad)
		}
		// No field whose name holds an underscore reaches the instance: the edges leave
		// underscores_in_headers off.
		for _, r := range got {
			if !strings.Contains(r, ` underscored="" `) {
				t.Fatalf("the edge forwarded a field named with an underscore for %q: %s", raw, r)
			}
		}
	})
}

// max_header_bytes may be set below net/http's own floor on a head (4 KiB over its
// MaxHeaderBytes of at least 1): a longer head is still answered 431 and forwarded nowhere,
// and a long chunk line does not leave the rest of the connection unchecked.
func TestASmallMaxHeaderBytesHoldsOnEveryRequest(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdgesWith(t, []string{rec.addr}, []string{rec.addr}, "http", "", ", max_header_bytes: 1024")
	pad := "X-Pad: " + strings.Repeat("p", 2000) + "\r\n"
	smuggle := "POST /smuggle HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		methods   []string
		want      []int
		forwards  int
	}{
		{name: "a GET over the limit", raw: "GET /big HTTP/1.1\r\n" + host + pad + "\r\n", methods: []string{"GET"}, want: []int{431}},
		{name: "a smuggling attempt over the limit", raw: "POST /smuggle HTTP/1.1\r\n" + host + pad + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			methods: []string{"POST"}, want: []int{431}},
		{name: "a GET within the limit", raw: "GET /small HTTP/1.1\r\n" + host + "X-Pad: p\r\n\r\n", methods: []string{"GET"}, want: []int{200}, forwards: 1},
		{name: "a smuggling attempt after a long chunk line", raw: "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", 2000) + "\r\nhello\r\n0\r\n\r\n" + smuggle,
			methods: []string{"POST", "POST"}, want: []int{200, 400}, forwards: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			got := exchange(t, c.west, tc.raw, tc.methods)
			reqs, bad := rec.take()
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || len(reqs) != tc.forwards || len(bad) > 0 {
				t.Errorf("answered %v and forwarded %q (refused upstream: %q), want %v and %d request(s)", got, reqs, bad, tc.want, tc.forwards)
			}
		})
	}
}

// underscoredOf lists req's header fields whose names hold an underscore, sorted.
func underscoredOf(req *http.Request) string {
	var out []string
	for k, vs := range req.Header {
		if strings.Contains(k, "_") {
			out = append(out, k+": "+strings.Join(vs, ", "))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// trailerOf lists req's trailer fields, sorted.
func trailerOf(req *http.Request) string {
	var out []string
	for k, vs := range req.Trailer {
		out = append(out, k+": "+strings.Join(vs, ", "))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// "PRI * HTTP/2.0" followed by fields is neither the HTTP/2 preface nor an HTTP/1.x request:
// it is answered 505 and its connection closed, as nginx answers any request line of HTTP/2.0
// and net/http any other (GET / HTTP/2.0), and nothing of it or after it goes upstream. net/http
// serves it to the handler as an HTTP/2.0 request (so that a handler can switch to HTTP/2
// itself), which the edge forwarded as "PRI * HTTP/1.1", body included, to instances that
// know no such request. An HTTP/2 request whose :method is PRI is refused too (400): RFC 9113
// §11.6 reserves PRI for the preface.
func TestAPRIRequestLineWithFieldsIsRefusedAsAnyOtherOfHTTP2(t *testing.T) {
	rec := newRecorder(t)
	c := twoEdges(t, []string{rec.addr}, []string{rec.addr}, "http", "")
	for _, raw := range []string{
		"PRI * HTTP/2.0\r\n" + host + "\r\n",
		"PRI * HTTP/2.0\r\n" + host + "Content-Length: 5\r\n\r\nhello",
		"PRI * HTTP/2.0\r\n" + host + "Content-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n" + host + "\r\n",
		"GET / HTTP/2.0\r\n" + host + "\r\n",
	} {
		conn := sendRaw(t, c.west, raw)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Errorf("%q: the connection was not closed: %v (read %q)", raw, err, got)
		}
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 505 ")) || bytes.Count(got, []byte("HTTP/1.1 ")) != 1 {
			t.Errorf("%q: answered %q, want one 505", raw, got)
		}
	}
	if code := h2cRequest(t, c.west, "PRI", [][2]string{{":path", "*"}}, nil); code != http.StatusBadRequest {
		t.Errorf("an HTTP/2 PRI * was answered %d, want 400", code)
	}
	if got, _ := rec.take(); len(got) > 0 {
		t.Errorf("the upstream got %q, want nothing", got)
	}
}

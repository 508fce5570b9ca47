package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// trailerUpstream is an instance that answers /t/<n>, by GET or POST, with the answer add
// registered as n.
type trailerUpstream struct {
	addr    string
	mu      sync.Mutex
	answers []string
}

func newTrailerUpstream(tb testing.TB) *trailerUpstream {
	u := &trailerUpstream{}
	u.addr = rawInstance(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			n, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/t/"))
			u.mu.Lock()
			answer := "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
			if err == nil && n >= 0 && n < len(u.answers) {
				answer = u.answers[n]
			}
			u.mu.Unlock()
			answer, cut := strings.CutSuffix(answer, cutHere)
			if _, err := io.WriteString(c, answer); err != nil || cut {
				return
			}
		}
	})
	return u
}

// cutHere ends a trailer section after which the instance closes its connection.
const cutHere = "\x00cut"

// add registers a chunked answer carrying head's extra fields and, after its body "ok", the
// trailer section section (what follows the last chunk, up to and with its empty line), and
// returns its path.
func (u *trailerUpstream) add(head, section string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answers = append(u.answers, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"+head+
		"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"+section)
	return "/t/" + strconv.Itoa(len(u.answers)-1)
}

// trailerPaths are the requests for path that reach each of the edge's paths: the lean one (a
// plain GET), the fast one (a GET net/http parsed) and ReverseProxy's (a POST with a body).
func trailerPaths(path string) map[string]string {
	h := " HTTP/1.1\r\nHost: shop.demo.test\r\nConnection: close\r\n"
	return map[string]string{
		"lean":         "GET " + path + h + "\r\n",
		"fast":         "GET " + path + h + "Content-Length: 0\r\n\r\n",
		"ReverseProxy": "POST " + path + h + "Content-Length: 2\r\n\r\nhi",
	}
}

// seenAnswer sends raw to addr and sums up what the client saw of the answer, read to the end
// of the connection (see sumAnswer).
func seenAnswer(tb testing.TB, addr, raw string) string {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !closedByPeer(err) {
		tb.Fatalf("read the answer to %q: %v (after %q)", raw, err, b)
	}
	return sumAnswer(b)
}

// sumAnswer sums up an answer as a client sees it: its status, the trailer names its head
// declares, its body, each line of its trailer section as written, sorted, and whether the
// answer was complete (its last chunk and trailer section ended).
func sumAnswer(b []byte) string {
	head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || len(head) < 12 {
		return fmt.Sprintf("no head in %q", b)
	}
	lines := strings.Split(string(head), "\r\n")
	var declared []string
	chunked := false
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ":")
		switch http.CanonicalHeaderKey(name) {
		case "Trailer":
			for f := range strings.SplitSeq(value, ",") {
				declared = append(declared, http.CanonicalHeaderKey(strings.TrimSpace(f)))
			}
		case "Transfer-Encoding":
			chunked = strings.TrimSpace(value) == "chunked"
		}
	}
	slices.Sort(declared)
	status := lines[0][9:12]
	if !chunked {
		return fmt.Sprintf("%s declared=%q body=%q", status, declared, rest)
	}
	var body []byte
	var trailer []string
	complete := false
	for {
		line, after, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			break
		}
		size, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || size < 0 || int64(len(after)) < size+2 {
			break
		}
		if size > 0 {
			body = append(body, after[:size]...)
			rest = after[size+2:]
			continue
		}
		rest = after
		for {
			line, after, ok := bytes.Cut(rest, []byte("\r\n"))
			if !ok {
				break
			}
			rest = after
			if len(line) == 0 {
				complete = true
				break
			}
			trailer = append(trailer, string(line))
		}
		break
	}
	slices.Sort(trailer)
	return fmt.Sprintf("%s declared=%q body=%q trailer=%q complete=%v", status, declared, body, trailer, complete)
}

// trailerCorpus are the trailer sections an instance sends. edge, when set, is what a client
// of the edge sees of the answer on every path, documented in differs, where ReverseProxy's
// client sees something else.
var trailerCorpus = []struct {
	name, head, section string
	differs, edge       string
}{
	{name: "a declared trailer", head: "Trailer: X-Sum\r\n", section: "X-Sum: 1\r\n\r\n"},
	{name: "no trailer", section: "\r\n"},
	{name: "an undeclared trailer", section: "X-Sum: 1\r\n\r\n"},
	{name: "a trailer with several values", head: "Trailer: X-Sum\r\n", section: "X-Sum: 1\r\nx-sum: 2\r\n\r\n"},
	{name: "declared trailers net/http's server refuses to send",
		head:    "Trailer: X-Sum, Host, Authorization, Cache-Control, Content-Type, Content-Encoding, Content-Range, Expect, Max-Forwards, Pragma, Range, Te, Www-Authenticate, Proxy-Authenticate\r\n",
		section: "X-Sum: 1\r\nHost: admin.internal\r\nAuthorization: Basic YTpi\r\nCache-Control: public\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Range: bytes 0-1/2\r\nExpect: 100-continue\r\nMax-Forwards: 1\r\nPragma: no-cache\r\nRange: bytes=0-\r\nTe: gzip\r\nWww-Authenticate: Basic\r\nProxy-Authenticate: Basic\r\n\r\n",
		differs: "the edge announces only the trailers it relays; ReverseProxy announces the others too and sends none of them",
		edge:    `200 declared=["X-Sum"] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "undeclared trailers that would frame, route or authenticate", head: "Trailer: X-Sum\r\n",
		section: "X-Sum: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nHost: admin.internal\r\nAuthorization: Basic YTpi\r\nConnection: close\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\nTrailer: X-More\r\nProxy-Authorization: x\r\n\r\n",
		differs: "RFC 9110 §6.5.1: the edge drops them; ReverseProxy relays a trailer nobody announced as it came, whatever its name",
		edge:    `200 declared=["X-Sum"] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "a cookie set in a trailer", head: "Trailer: X-Sum, Set-Cookie\r\n", section: "X-Sum: 1\r\nSet-Cookie: session=forged\r\n\r\n",
		differs: "RFC 9110 §6.5.1 names cookies among the fields a trailer may not carry: the edge drops it; ReverseProxy relays it",
		edge:    `200 declared=["X-Sum"] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "a trailer the answer's Connection names", head: "Connection: X-Secret\r\n", section: "X-Secret: s\r\nX-Sum: 1\r\n\r\n",
		differs: "RFC 9110 §7.6.1: a field Connection names is hop-by-hop, in the header or the trailer: the edge drops it; ReverseProxy relays it",
		edge:    `200 declared=[] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "a trailer name with a space", head: "Trailer: X-Sum\r\n", section: "X Bad: 1\r\nX-Sum: 1\r\n\r\n"},
	{name: "a trailer name with a space announced", head: "Trailer: X-Sum, X Bad\r\n", section: "X Bad: 1\r\nX-Sum: 1\r\n\r\n",
		differs: "the edge announces only the trailers it relays; ReverseProxy announces one whose name is no token",
		edge:    `200 declared=["X-Sum"] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "a NUL in a trailer value", section: "X-Sum: a\x00b\r\n\r\n"},
	{name: "a bare CR in a trailer value", section: "X-Sum: a\rHTTP/1.1 200 OK\r\n\r\n"},
	{name: "a bare LF in a trailer", section: "X-Sum: a\nX-Injected: 1\r\n\r\n"},
	{name: "a folded trailer", section: "X-Sum: a\r\n b\r\n\r\n"},
	{name: "a status line in the trailer section", section: "X-Sum: 1\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{name: "a second answer after the trailer section", section: "X-Sum: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{name: "a trailer section of 4 KiB", section: "X-Big: " + strings.Repeat("b", 4096-len("X-Big: \r\n\r\n")) + "\r\n\r\n"},
	{name: "a trailer section a byte over 4 KiB", section: "X-Big: " + strings.Repeat("b", 4097-len("X-Big: \r\n\r\n")) + "\r\n\r\n"},
	{name: "a trailer section over 4 KiB in small fields", section: strings.Repeat("X-Many: 0123456789abcdef\r\n", 200) + "\r\n"},
	{name: "a trailer section over 8 KiB", section: "X-Big: " + strings.Repeat("b", 9000) + "\r\n\r\n"},
	{name: "a trailer section cut short", section: "X-Sum: 1\r\n" + cutHere},
	{name: "a trailer declared as Content-Length", head: "Trailer: Content-Length\r\n", section: "Content-Length: 5\r\n\r\n",
		differs: "both answer 502; the edge's names its status in its body, ReverseProxy's is empty",
		edge:    `502 declared=[] body="Bad Gateway\n"`},
}

// TestTheEdgeRelaysAnAnswersTrailersAsReverseProxyDoesOrAsDocumented sends each answer of
// trailerCorpus through every path of the edge and through httputil.ReverseProxy, and compares
// what their clients see.
func TestTheEdgeRelaysAnAnswersTrailersAsReverseProxyDoesOrAsDocumented(t *testing.T) {
	up := newTrailerUpstream(t)
	c := twoEdges(t, []string{up.addr}, []string{up.addr}, "http", "")
	ref := referenceProxy(t, up.addr)
	for _, tc := range trailerCorpus {
		t.Run(tc.name, func(t *testing.T) {
			path := up.add(tc.head, tc.section)
			want := seenAnswer(t, ref, "GET "+path+" HTTP/1.1\r\nHost: shop.demo.test\r\nConnection: close\r\n\r\n")
			if tc.differs != "" {
				if want == tc.edge {
					t.Errorf("documented as differing (%s), but ReverseProxy's client sees what the edge's does: %s", tc.differs, want)
				}
				want = tc.edge
			}
			for name, raw := range trailerPaths(path) {
				if got := seenAnswer(t, c.west, raw); got != want {
					t.Errorf("%s path: the client sees\n%s\nwant\n%s", name, got, want)
				}
			}
		})
	}
}

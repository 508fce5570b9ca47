package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
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
	return u.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + head +
		"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + section)
}

// answer registers the whole of an answer, as the instance writes it, and returns its path.
func (u *trailerUpstream) answer(raw string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answers = append(u.answers, raw)
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
// of the connection.
func seenAnswer(tb testing.TB, addr, raw string) answerSum {
	tb.Helper()
	return sumAnswer(seenBytes(tb, addr, raw))
}

// seenBytes sends raw to addr and returns what the client received, read to the end of the
// connection.
func seenBytes(tb testing.TB, addr, raw string) []byte {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	// A bound for a hung edge, not a wait: the largest answers (12 MiB of interim heads) took
	// over 5 s on a loaded machine.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !closedByPeer(err) {
		tb.Fatalf("read the answer to %q: %v (after %q)", raw, err, b)
	}
	return b
}

// answerSum is an answer as a client sees it: its status, the trailer names its head
// announces, its body, each line of its trailer section as written, sorted, and whether the
// answer was complete (its last chunk and trailer section ended) or, when it is not chunked,
// its head.
type answerSum struct {
	status, body      string
	declared, trailer []string
	chunked, complete bool
}

func (a answerSum) String() string {
	if !a.chunked {
		return fmt.Sprintf("%s declared=%q body=%q", a.status, a.declared, a.body)
	}
	return fmt.Sprintf("%s declared=%q body=%q trailer=%q complete=%v", a.status, a.declared, a.body, a.trailer, a.complete)
}

func sumAnswer(b []byte) answerSum {
	head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	status, line := statusOf(head)
	if !ok || !line {
		return answerSum{status: fmt.Sprintf("no head in %q", b)}
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
	if !chunked {
		return answerSum{status: status, declared: declared, body: string(rest)}
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
	return answerSum{status: status, declared: declared, body: string(body), trailer: trailer, chunked: true, complete: complete}
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
	{name: "a trailer section ended by bare LFs, 5 KiB before the next CRLFCRLF", section: "X-Sum: 1\n\n" + strings.Repeat("a", 5<<10) + "\r\n\r\n",
		differs: "net/http reads a trailer section only when a CRLFCRLF follows within its read buffer, which a section ended by bare LFs need not hold: the edge's paths read answers through 8 KiB, ReverseProxy's transport through 4 KiB, and cuts the answer, complete as it was",
		edge:    `200 declared=[] body="ok" trailer=["X-Sum: 1"] complete=true`},
	{name: "a trailer section ended by bare LFs, 9 KiB before the next CRLFCRLF", section: "X-Sum: 1\n\n" + strings.Repeat("a", 9<<10) + "\r\n\r\n"},
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
	c := twoEdgesWith(t, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(t, up.addr)
	for _, tc := range trailerCorpus {
		t.Run(tc.name, func(t *testing.T) {
			path := up.add(tc.head, tc.section)
			want := seenAnswer(t, ref, "GET "+path+" HTTP/1.1\r\nHost: shop.demo.test\r\nConnection: close\r\n\r\n").String()
			if tc.differs != "" {
				if want == tc.edge {
					t.Errorf("documented as differing (%s), but ReverseProxy's client sees what the edge's does: %s", tc.differs, want)
				}
				want = tc.edge
			}
			for name, raw := range trailerPaths(path) {
				if got := seenAnswer(t, c.west, raw).String(); got != want {
					t.Errorf("%s path: the client sees\n%s\nwant\n%s", name, got, want)
				}
			}
		})
	}
}

// neverEjected keeps the instance of the edge's app in its pool however many of its answers
// break off: otherwise the corpus's would eject it, and the next answers come from elsewhere.
const neverEjected = ", passive_fall: 1000000"

// neverRelayed are trailer names no client of the edge may see, whatever the instance sent.
var neverRelayed = map[string]bool{"Transfer-Encoding": true, "Content-Length": true, "Host": true,
	"Authorization": true, "Set-Cookie": true, "Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Upgrade": true, "Proxy-Authorization": true, "Proxy-Authenticate": true,
	"Content-Type": true, "Content-Encoding": true, "Cache-Control": true}

// fuzzAnswer is the answer FuzzEdgeTrailers has the instance send: the bytes hints (interim
// answers, or whatever else) before the final head, whose status is code (200 to 599 but 502), with a
// Content-Type when typed and a field folded over two lines when fold holds, framed by
// framing's Content-Length (0), chunked coding (1, the trailer section section after the last
// chunk), the connection's end (2) or an empty chunked body (3, with section), announcing the
// trailers declared. The instance closes its connection after it, and says so, so no proxy
// sends the next request on it.
func fuzzAnswer(hints string, code int, framing uint8, body, declared, section string, typed, fold bool) string {
	a := hints + "HTTP/1.1 " + strconv.Itoa(code) + " Whatever\r\nConnection: close\r\n"
	if typed {
		a += "Content-Type: text/plain\r\n"
	}
	if fold {
		a += "X-Folded: a \r\n b\r\n"
	}
	if declared != "" {
		a += "Trailer: " + declared + "\r\n"
	}
	switch framing % 4 {
	case 0:
		return a + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body + cutHere
	case 1:
		a += "Transfer-Encoding: chunked\r\n\r\n"
		if body != "" {
			a += strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n"
		}
		return a + "0\r\n" + section + cutHere
	case 2:
		return a + "\r\n" + body + cutHere
	default:
		return a + "Transfer-Encoding: chunked\r\n\r\n0\r\n" + section + cutHere
	}
}

// withoutField is head, a clientView's, without its fields named name.
func withoutField(head, name string) string {
	return strings.Join(slices.DeleteFunc(strings.Split(head, "\r\n"), func(l string) bool {
		return strings.HasPrefix(l, name+":")
	}), "\r\n")
}

// FuzzEdgeTrailers has the instance send answers of arbitrary status, interim answers before
// them, framing, body, Trailer field and trailer section (fuzzAnswer), through every path of
// the edge, over HTTP/1.1 and HTTP/1.0, and through httputil.ReverseProxy. Every path of the
// edge must show its client the same; and what ReverseProxy's client sees: the interim answers
// without their hop-by-hop fields (none over HTTP/1.0), the final status, and when it is the
// instance's, the final head but for its Trailer fields, the body when both answers are
// complete, and a chunked answer complete where ReverseProxy's is, but for a section near 4 KiB
// (counted as written by the edge, as it arrived by ReverseProxy's transport) or over it (ended
// by bare LFs: see upstreamReadBuffer); no trailer ReverseProxy's client does not see (of an
// answer it cut, none of neverRelayed), no name of neverRelayed, and no trailer announced that
// ReverseProxy does not announce. The differences ReverseProxy's timing makes, and the framing
// of an empty body whose trailers only ReverseProxy relays, are set aside where they arise.
// Over HTTP/1.1, a second request pipelined behind the fuzzed one on each path must get its
// own answer and nothing else (keptAliveAfter).
// underHundred reports whether http.ReadResponse reads a head of hints, up to the final one,
// for a status under 100 ("HTTP/1.1 +03" reads as 3): ReverseProxy then panics writing it, and
// its client sees nothing, where the edge fails the attempt with 502 (checkStatus).
func underHundred(hints string) bool {
	br := bufio.NewReader(strings.NewReader(hints))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return false
		}
		if resp.StatusCode < 100 {
			return true
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return false
		}
	}
}

func FuzzEdgeTrailers(f *testing.F) {
	up := newTrailerUpstream(f)
	c := twoEdgesWith(f, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(f, up.addr)
	for _, tc := range trailerCorpus {
		declared, _ := strings.CutPrefix(strings.TrimSuffix(tc.head, "\r\n"), "Trailer: ")
		f.Add("", uint16(0), uint8(1), "ok", declared, strings.TrimSuffix(tc.section, cutHere), true, false)
	}
	for _, tc := range headCorpus {
		if hints, _, ok := strings.Cut(tc.answer, "HTTP/1.1 200 OK\r\n"); ok && len(hints) < 1<<10 {
			f.Add(hints, uint16(0), uint8(0), "ok", "", "", true, false)
		}
	}
	for framing := range uint8(4) {
		for _, code := range []uint16{4, 104, 103, 300, 301} { // 204, 304, 303, 500, 501
			f.Add("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", code, framing, "<b>hi", "X-Sum", "X-Sum: 1\r\n\r\n", false, true)
		}
	}
	// The answer to the request that follows the fuzzed one on its connection, marked with a
	// value no fuzzed answer holds.
	mark := "X-Answer: next " + strconv.FormatUint(rand.Uint64(), 36)
	next := up.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + mark + "\r\nContent-Length: 4\r\n\r\nnext")
	f.Fuzz(func(t *testing.T, hints string, status uint16, framing uint8, body, declared, section string, typed, fold bool) {
		if strings.ContainsAny(declared, "\r\n") {
			return // a broken head, not a trailer
		}
		code := 200 + int(status)%400
		if code == http.StatusBadGateway {
			code = http.StatusNotImplemented // 502 is the proxies' own failure, told apart by its status
		}
		path := up.answer(fuzzAnswer(hints, code, framing, body, declared, section, typed, fold))
		in := fmt.Sprintf("%q, %d, framing %d, %q, %q, %q, typed %v, fold %v", hints, code, framing%4, body, declared, section, typed, fold)
		paths := headPaths(path)
		// The heads are compared without their Trailer fields, which announce the trailers
		// compared on their own (one field or several, the edge's only those it relays).
		// ReverseProxy flushes the head of an answer of unknown length from a timer that races
		// its first write, and net/http's server sniffs a Content-Type for an untyped one only
		// when the write wins: the lean and fast paths always do.
		sniffRace := !typed && framing%4 != 0
		// hints may hold a final answer of its own (HTTP/1.1 301 …, without framing), which is
		// then the answer, untyped and of unknown length as far as anyone knows.
		sniffs := func(v clientView) bool { return sniffRace || v.final.status != strconv.Itoa(code) }
		// An answer of unknown length that breaks off before the first byte of its body:
		// ReverseProxy's head may have gone out, flushed by its timer, or not; the lean and
		// fast paths send none and close the connection. Over HTTP/1.0, where a head with an
		// empty body delimited by the connection's end looks complete, any empty answer of
		// unknown length with the instance's status is taken for one that may have broken off.
		emptyUnsized := framing%4 == 3 || framing%4 == 1 && body == ""
		broken := func(v clientView, http10 bool) clientView {
			a := v.final
			if a.status == strconv.Itoa(code) && a.body == "" && (!http10 && a.chunked && !a.complete || http10 && emptyUnsized) {
				return clientView{interim: v.interim, final: sumAnswer(nil)}
			}
			return v
		}
		for _, http10 := range []bool{false, true} {
			raw := "GET " + path + " HTTP/1.1\r\nHost: shop.demo.test\r\nConnection: close\r\n\r\n"
			if http10 {
				raw = "GET " + path + " HTTP/1.0\r\nHost: shop.demo.test\r\n\r\n"
			}
			want := broken(seenView(t, ref, raw), http10)
			want.head = withoutField(want.head, "Trailer")
			if sniffs(want) {
				want.head = withoutField(want.head, "Content-Type")
			}
			want.interim = withoutHop(want).interim
			if http10 {
				want = withoutInterim(want)
			}
			var got clientView
			first := ""
			for name, p := range paths {
				if p.http10 != http10 {
					continue
				}
				v := broken(seenView(t, c.west, p.raw), http10)
				v.head = withoutField(v.head, "Trailer")
				if sniffs(v) {
					v.head = withoutField(v.head, "Content-Type")
				}
				if first == "" {
					got, first = v, name
				} else if v.String() != got.String() {
					t.Fatalf("on %s the edge's paths differ: %s path\n%s\n%s path\n%s", in, name, v, first, got)
				}
			}
			if strings.HasPrefix(want.final.status, "no head") && got.final.status == "502" && underHundred(hints) {
				continue // both failed the answer, ReverseProxy by a panic
			}
			if fmt.Sprint(got.interim) != fmt.Sprint(want.interim) || got.final.status != want.final.status {
				t.Fatalf("on %s the edge's client sees\n%s\nReverseProxy's\n%s", in, got, want)
			}
			if got.final.status != strconv.Itoa(code) {
				continue // both failed the answer
			}
			g, w := got.final, want.final
			if g.body == "" && w.body == "" && len(g.trailer) == 0 && len(w.trailer) > 0 {
				// The edge dropped every trailer ReverseProxy relays: its empty body goes with
				// Content-Length 0, ReverseProxy's chunked, to carry them.
				for _, k := range []string{"Content-Length", "Transfer-Encoding"} {
					got.head, want.head = withoutField(got.head, k), withoutField(want.head, k)
				}
			}
			if got.head != want.head {
				t.Fatalf("on %s the edge's final head is\n%s\nReverseProxy's\n%s", in, got, want)
			}
			near := len(section) > maxTrailerBytes-1024
			if g.chunked && w.chunked && g.complete != w.complete && !near {
				t.Fatalf("on %s the edge's answer is complete=%v, ReverseProxy's complete=%v", in, g.complete, w.complete)
			}
			if g.body != w.body && (g.complete || !g.chunked) && (w.complete || !w.chunked) {
				t.Fatalf("on %s the edge's body is %q, ReverseProxy's %q", in, g.body, w.body)
			}
			for _, l := range g.trailer {
				name, _, _ := strings.Cut(l, ":")
				// ReverseProxy may have cut an answer with a long section before its trailers.
				if neverRelayed[name] || !slices.Contains(w.trailer, l) && (w.complete || !near) {
					t.Fatalf("on %s the edge relays %q; ReverseProxy relays %q", in, l, w.trailer)
				}
			}
			for _, k := range g.declared {
				if neverRelayed[k] || !slices.Contains(w.declared, k) {
					t.Fatalf("on %s the edge announces %q; ReverseProxy announces %q", in, k, w.declared)
				}
			}
		}
		for _, kind := range []string{"lean", "fast", "ReverseProxy"} {
			keptAliveAfter(t, in, kind, c.west, path, next, mark)
		}
	})
}

// keptAliveAfter sends a request of kind for path, then one for next, whose answer carries
// mark, pipelined on one connection to the edge at addr, and fails unless its client sees the
// first answer whole and then exactly next's, or the first answer and the connection's end
// (announced by Connection: close when the answer was complete), and no other byte.
func keptAliveAfter(t *testing.T, in, kind, addr, path, next, mark string) {
	t.Helper()
	method := http.MethodGet
	reqs := []string{keptAliveRequest(kind, method, path, false), keptAliveRequest(kind, method, next, true)}
	b := exchangeOn(t, addr, reqs, []string{method, method}, true)
	views, rest := answersOf(b, []string{method, method})
	closes := func(v clientView) bool { return slices.Contains(strings.Split(v.head, "\r\n"), "Connection: close") }
	switch {
	case len(views) == 2:
		v := views[1]
		if len(v.interim) > 0 || v.final.status != "200" || v.final.body != "next" || !slices.Contains(strings.Split(v.head, "\r\n"), mark) || len(rest) > 0 {
			t.Fatalf("on %s, %s path, the next request on the connection got\n%s\nthen %q; want its own answer alone", in, kind, v, rest)
		}
		if closes(views[0]) {
			t.Fatalf("on %s, %s path, the edge answered the next request after its first answer closed the connection:\n%s", in, kind, views[0])
		}
	case len(views) == 1:
		if !closes(views[0]) || len(rest) > 0 {
			t.Fatalf("on %s, %s path, the edge answered\n%s\nthen %q and closed the connection, want the next request's answer", in, kind, views[0], rest)
		}
	default:
		if bytes.Contains(rest, []byte(mark)) {
			t.Fatalf("on %s, %s path, the next request's answer follows an answer not complete: %q", in, kind, rest)
		}
	}
}

// An answer with no body but a trailer section, and answers that carry no body at all (to a
// HEAD, a 204, a 304) yet announce trailers: every path of the edge shows its client what
// ReverseProxy's does, but that none announces a trailer the edge never relays.
func TestTheTrailersOfAnEmptyOrBodilessAnswerFollowTheEdgesRuleOnEveryPath(t *testing.T) {
	up := newTrailerUpstream(t)
	c := twoEdgesWith(t, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(t, up.addr)
	const announced = "Trailer: X-Sum, Set-Cookie, Upgrade\r\nConnection: close\r\n"
	for _, tc := range []struct {
		name, method, answer string
	}{
		{"an empty body with a trailer nobody announced", "GET",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\n"},
		{"an empty body with an announced trailer", "GET",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\n"},
		{"a 304 that announces trailers", "GET", "HTTP/1.1 304 Not Modified\r\n" + announced + "Transfer-Encoding: chunked\r\n\r\n"},
		{"a 204 that announces trailers", "GET", "HTTP/1.1 204 No Content\r\n" + announced + "\r\n"},
		{"the answer to a HEAD that announces trailers", "HEAD", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + announced + "Transfer-Encoding: chunked\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := up.answer(tc.answer)
			h := " HTTP/1.1\r\nHost: shop.demo.test\r\nConnection: close\r\n"
			want := seenAnswer(t, ref, tc.method+" "+path+h+"\r\n")
			want.declared = slices.DeleteFunc(want.declared, func(k string) bool { return neverRelayed[k] })
			for name, raw := range map[string]string{
				"lean":         tc.method + " " + path + h + "\r\n",
				"fast":         tc.method + " " + path + h + "Content-Length: 0\r\n\r\n",
				"ReverseProxy": tc.method + " " + path + h + "Content-Length: 2\r\n\r\nhi",
			} {
				if got := seenAnswer(t, c.west, raw); got.String() != want.String() {
					t.Errorf("%s path: the client sees\n%s\nwant\n%s", name, got, want)
				}
			}
		})
	}
}

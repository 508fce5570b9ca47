package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// clientView is what a client sees of one exchange: the head of each interim answer as written,
// then the final answer's head, its status line and its fields sorted with Date's value masked,
// and the final answer summed up (sumAnswer).
type clientView struct {
	interim []string
	head    string
	final   answerSum
}

func (v clientView) String() string {
	parts := append(slices.Clone(v.interim), v.head, v.final.String())
	for i, p := range parts {
		if len(p) > 1024 {
			// Still compared whole, but shown short when it differs.
			parts[i] = fmt.Sprintf("%.200s… (%d bytes, SHA-256 %x)", p, len(p), sha256.Sum256([]byte(p)))
		}
	}
	return strings.Join(parts, "\n---\n")
}

// seenView sends raw to addr and returns what the client saw, read to the end of the connection.
func seenView(tb testing.TB, addr, raw string) clientView {
	tb.Helper()
	return viewOf(seenBytes(tb, addr, raw))
}

// statusOf returns the status code of head, an answer's, when it starts with a status line
// (HTTP/1.x, a space, three digits, then a space or the line's end).
func statusOf(head []byte) (string, bool) {
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) || head[7] < '0' || head[7] > '9' || head[8] != ' ' ||
		len(head) > 12 && head[12] != ' ' && head[12] != '\r' {
		return "", false
	}
	for _, c := range head[9:12] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return string(head[9:12]), true
}

// isInterim reports whether code, a status, is an interim answer's: 1xx but 101.
func isInterim(code string) bool { return code[0] == '1' && code != "101" }

func viewOf(b []byte) clientView {
	var v clientView
	for {
		head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		if !ok {
			break
		}
		// Bytes that are no status line (a body's, say) are never taken for an interim answer:
		// sumAnswer says what they are.
		code, line := statusOf(head)
		if !line {
			break
		}
		if isInterim(code) {
			v.interim = append(v.interim, string(head))
			b = rest
			continue
		}
		lines := strings.Split(string(head), "\r\n")
		fields := lines[1:]
		for i, f := range fields {
			if name, _, _ := strings.Cut(f, ":"); http.CanonicalHeaderKey(name) == "Date" {
				fields[i] = "Date: (masked)"
			}
		}
		slices.Sort(fields)
		v.head = strings.Join(append([]string{lines[0]}, fields...), "\r\n")
		break
	}
	v.final = sumAnswer(b)
	if f := v.final; f.body == "" && len(f.trailer) == 0 && (f.complete || !f.chunked) {
		// ReverseProxy flushes the head of an answer of unknown length from a timer that races
		// the end of its body: an empty one reaches its client chunked, or with Content-Length 0
		// (HTTP/1.0: delimited by the connection's end, or Content-Length 0), whichever wins. The
		// edge sends Content-Length 0. Either way the client sees an empty body.
		lines := strings.Split(v.head, "\r\n")
		v.head = strings.Join(slices.DeleteFunc(lines, func(l string) bool {
			return l == "Content-Length: 0" || l == "Transfer-Encoding: chunked"
		}), "\r\n")
		v.final = answerSum{status: f.status, declared: f.declared}
	}
	return v
}

// withoutInterim is v as a client sees it when no interim answer reaches it.
func withoutInterim(v clientView) clientView {
	v.interim = nil
	return v
}

// withoutHop is v with the hop-by-hop fields of its interim answers removed (RFC 9110 §7.6.1):
// those of hopByHop and those a Connection field names.
func withoutHop(v clientView) clientView {
	out := clientView{head: v.head, final: v.final}
	for _, h := range v.interim {
		lines := strings.Split(h, "\r\n")
		hdr := http.Header{}
		for _, l := range lines[1:] {
			name, value, _ := strings.Cut(l, ":")
			hdr.Add(name, strings.TrimSpace(value))
		}
		listed := connectionListed(hdr)
		kept := lines[:1]
		for _, l := range lines[1:] {
			name, _, _ := strings.Cut(l, ":")
			if k := http.CanonicalHeaderKey(name); !listed[k] && !slices.Contains(hopByHop, k) {
				kept = append(kept, l)
			}
		}
		out.interim = append(out.interim, strings.Join(kept, "\r\n"))
	}
	return out
}

// failedAfter is v as a client sees it when the edge relays its first n interim answers, then
// fails the attempt and answers 502 itself, in v's protocol and with Connection: close where
// v's head has it.
func failedAfter(n int) func(clientView) clientView {
	return func(v clientView) clientView {
		proto, _, _ := strings.Cut(v.head, " ")
		head := proto + " 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nDate: x\r\n"
		if slices.Contains(strings.Split(v.head, "\r\n"), "Connection: close") {
			head += "Connection: close\r\n"
		}
		out := viewOf([]byte(head + "\r\n" + failBody(http.StatusBadGateway)))
		out.interim = v.interim[:min(n, len(v.interim))]
		return out
	}
}

// headCorpus are answers an instance sends, each with interim answers or an unusual head. edge,
// when set, is what the edge's client sees given what ReverseProxy's does, a difference
// documented in differs.
var headCorpus = []struct {
	name, answer string
	differs      string
	edge         func(clientView) clientView
}{
	{name: "a 103 with links, then a Content-Length answer",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style\r\nLink: </b.js>; rel=preload; as=script\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
	{name: "a 103, then an untyped Content-Length answer",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<b>hi"},
	{name: "a 100 nobody asked for, a 102, two 103s and an unknown 1xx, then a chunked answer with a trailer",
		answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-Step: 1\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b.js>\r\n\r\nHTTP/1.1 199 Whatever\r\nX-Odd: 1\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n"},
	{name: "a 103, then an answer delimited by the connection's end",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok" + cutHere},
	{name: "a 103, then an empty chunked answer",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "a 103, then a 204",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
	{name: "a 103, then a 304",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n"},
	{name: "a 103, then a 503",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy"},
	{name: "a 103 with framing fields, which a 1xx cannot use",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
	{name: "a 103 with hop-by-hop fields",
		answer: "HTTP/1.1 103 Early Hints\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
			"Upgrade: h2c\r\nTe: trailers\r\nTrailer: X-Sum\r\nProxy-Authenticate: Basic\r\nLink: </a.css>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
		differs: "RFC 9110 §7.6.1: the edge removes an interim answer's hop-by-hop fields, as it does a final one's; ReverseProxy relays them as they came",
		edge:    withoutHop},
	{name: "a folded field in the final head",
		answer: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Fold: a \r\n  b  \r\n\t\r\nX-Tail: c\r\n \r\nContent-Length: 2\r\n\r\nok"},
	{name: "two 103s of 4 MiB each, 8 MiB in all",
		answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </"+strings.Repeat("a", 4<<20)+">\r\n\r\n", 2) +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
	{name: "three 103s of 4 MiB each, 12 MiB in all",
		answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </"+strings.Repeat("a", 4<<20)+">\r\n\r\n", 3) +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
		differs: "the heads of an answer may take maxResponseHead (10 MiB) in all on every path: the edge relays the two 103s within it, then answers 502; ReverseProxy's transport starts its limit over after each interim answer",
		edge:    failedAfter(2)},
	{name: "a space between a field's name and its colon, a Content-Length's among them",
		answer: "HTTP/1.1 103 Early Hints\r\nLink : </a.css>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Spaced : 1\r\nContent-Length : 5\r\nContent-Length: 2\r\n\r\nok"},
	{name: "a folded field in a 103",
		answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>;\r\n rel=preload \r\n \r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
}

// headPath is a request that reaches one of the edge's paths, over HTTP/1.0 or HTTP/1.1.
type headPath struct {
	raw    string
	http10 bool
}

// headPaths are the requests for path that reach each of the edge's paths over HTTP/1.1 (as
// trailerPaths) and over HTTP/1.0 (the fast one and ReverseProxy's).
func headPaths(path string) map[string]headPath {
	out := map[string]headPath{}
	for name, raw := range trailerPaths(path) {
		out[name] = headPath{raw: raw}
	}
	h := " HTTP/1.0\r\nHost: shop.demo.test\r\n"
	out["HTTP/1.0 fast"] = headPath{raw: "GET " + path + h + "\r\n", http10: true}
	out["HTTP/1.0 ReverseProxy"] = headPath{raw: "POST " + path + h + "Content-Length: 2\r\n\r\nhi", http10: true}
	return out
}

// TestTheEdgeRelaysInterimAnswersAndHeadsAsReverseProxyDoesOrAsDocumented sends each answer of
// headCorpus through every path of the edge and through httputil.ReverseProxy, over HTTP/1.1
// and HTTP/1.0, and compares what their clients see: every interim answer as written, the
// final head (its fields in any order, Date aside), the body and the trailers. An HTTP/1.0
// client sees no interim answer from the edge (RFC 9110 §15.2: a server must not send one to
// it); ReverseProxy sends it one.
func TestTheEdgeRelaysInterimAnswersAndHeadsAsReverseProxyDoesOrAsDocumented(t *testing.T) {
	t.Parallel()
	up := newTrailerUpstream(t)
	c := twoEdgesWith(t, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(t, up.addr)
	for _, tc := range headCorpus {
		t.Run(tc.name, func(t *testing.T) {
			path := up.answer(tc.answer)
			for name, p := range headPaths(path) {
				want := seenView(t, ref, p.raw)
				if tc.edge != nil {
					if tc.edge(want).String() == want.String() {
						t.Errorf("%s: documented as differing (%s), but ReverseProxy's client sees what the edge's does:\n%s", name, tc.differs, want)
					}
					want = tc.edge(want)
				}
				if p.http10 {
					if len(want.interim) == 0 && strings.HasPrefix(tc.answer, "HTTP/1.1 1") {
						t.Errorf("%s: ReverseProxy sends an HTTP/1.0 client no interim answer, which the edge's documented difference says it does", name)
					}
					want = withoutInterim(want)
				}
				if got := seenView(t, c.west, p.raw); got.String() != want.String() {
					t.Errorf("%s path: the client sees\n%s\nwant\n%s", name, got, want)
				}
			}
		})
	}
}

// An HTTP/2 client sees an interim answer as a HEADERS frame of its own, on the fast path and
// ReverseProxy's, as ReverseProxy's client does.
func TestAnHTTP2ClientSeesTheInterimAnswerFirst(t *testing.T) {
	up := newTrailerUpstream(t)
	c := twoEdgesWith(t, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(t, up.addr)
	path := up.answer("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	for _, m := range []struct {
		path, method string
		data         []byte
	}{{"fast path", "GET", nil}, {"ReverseProxy", "POST", []byte("hello")}} {
		f := [][2]string{{":path", path}}
		if m.data != nil {
			f = append(f, [2]string{"content-length", "5"})
		}
		got, want := h2cRequest(t, c.west, m.method, f, m.data), h2cRequest(t, ref, m.method, f, m.data)
		if got != http.StatusEarlyHints || want != http.StatusEarlyHints {
			t.Errorf("%s: the first status the edge sends is %d, ReverseProxy's %d; want 103", m.path, got, want)
		}
	}
}

// A client that leaves once an interim answer reached it, before the final one: on every path
// the edge stops waiting on the instance and closes the connection to it, as ReverseProxy does
// when its request's context ends, rather than holding it until response_header (15 s). The
// interim answer comes at once, or after the lean path began watching a slow answer; the
// client sent its request alone, or pipelined another after it, which net/http's server
// already read when the client leaves. ReverseProxy, in front of the same instance, is held
// to the same.
func TestAClientThatLeavesAfterAnInterimAnswerCancelsItsRequestUpstreamOnEveryPath(t *testing.T) {
	instance := func() (addr string, received, released chan string) {
		received, released = make(chan string, 64), make(chan string, 64)
		addr = rawInstance(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			received <- req.URL.Path
			if req.URL.Path == "/late" {
				<-time.After(3 * slowAnswer) // the lean path watches the client by then
			}
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
			_, _ = io.Copy(io.Discard, br) // no final answer; returns when the proxy closes the connection
			released <- req.URL.Path
		})
		return addr, received, released
	}
	w1, received, released := instance()
	c := twoEdgesWith(t, []string{w1}, []string{w1}, "http", "", neverEjected)
	r1, refReceived, refReleased := instance()
	ref := referenceProxy(t, r1)
	// await reports whether path comes on ch within d; the request pipelined after it may come
	// too, when a proxy serves it after the client left.
	await := func(ch chan string, path string, d time.Duration) bool {
		deadline := time.After(d)
		for {
			select {
			case got := <-ch:
				if got == path {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	// leaves sends raw, a request for path, to addr, reads the 103, leaves, and reports whether
	// the instance was released within 3 s.
	leaves := func(addr, path, raw string, received, released chan string) bool {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, raw)
		if !await(received, path, 5*time.Second) {
			t.Fatalf("%q never reached the instance", raw)
		}
		br := bufio.NewReader(conn)
		var head strings.Builder
		for !strings.HasSuffix(head.String(), "\r\n\r\n") {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%q: read the interim answer: %v (after %q)", raw, err, head.String()+l)
			}
			head.WriteString(l)
		}
		if !strings.HasPrefix(head.String(), "HTTP/1.1 103 ") {
			t.Fatalf("%q: the client's first answer is %q, want a 103", raw, head.String())
		}
		_ = conn.Close()
		return await(released, path, 3*time.Second)
	}
	for _, path := range []string{"/soon", "/late"} {
		for name, raw := range map[string]string{
			"lean":         "GET " + path + " HTTP/1.1\r\nHost: shop\r\n\r\n",
			"fast":         "HEAD " + path + " HTTP/1.1\r\nHost: shop\r\n\r\n",
			"ReverseProxy": "PUT " + path + " HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
		} {
			for _, pipelined := range []bool{false, true} {
				if pipelined {
					raw += "GET /next HTTP/1.1\r\nHost: shop\r\n\r\n"
				}
				if !leaves(ref, path, raw, refReceived, refReleased) {
					t.Errorf("%s %s, pipelined %v: ReverseProxy still waited on the instance 3s after its client left with an interim answer", name, path, pipelined)
				}
				if !leaves(c.west, path, raw, received, released) {
					t.Errorf("%s %s, pipelined %v: the edge still waited on the instance 3s after its client left with an interim answer, want the upstream request cancelled as ReverseProxy cancels it", name, path, pipelined)
				}
			}
		}
	}
}

// answersOf splits b, what a client read of one connection, into the answers to its requests,
// whose methods are methods, each cut where its framing ends it: at its head for a HEAD, a 204
// or a 304, after Content-Length bytes, after the trailer section of a chunked body, or at the
// connection's end. It returns the views of the complete answers and what follows them: an
// answer cut short, or bytes that are no answer.
func answersOf(b []byte, methods []string) ([]clientView, []byte) {
	var out []clientView
	for _, m := range methods {
		n := answerLen(b, m)
		if n < 0 {
			break
		}
		out = append(out, viewOf(b[:n]))
		b = b[n:]
	}
	return out, b
}

// answerLen is the length of the answer to a request with method at the start of b, interim
// answers included, or -1 when b does not start with a complete answer.
func answerLen(b []byte, method string) int {
	n := 0
	for {
		i := bytes.Index(b[n:], []byte("\r\n\r\n"))
		if i < 0 {
			return -1
		}
		head := b[n : n+i]
		code, ok := statusOf(head)
		if !ok {
			return -1
		}
		n += i + 4
		if isInterim(code) {
			continue
		}
		if method == http.MethodHead || code == "204" || code == "304" {
			return n
		}
		length, chunked := -1, false
		for _, l := range strings.Split(string(head), "\r\n")[1:] {
			name, value, _ := strings.Cut(l, ":")
			value = strings.TrimSpace(value)
			switch http.CanonicalHeaderKey(name) {
			case "Content-Length":
				if length, ok = atoi(value); !ok {
					return -1
				}
			case "Transfer-Encoding":
				chunked = value == "chunked"
			}
		}
		switch {
		case chunked:
			if m := chunkedLen(b[n:]); m >= 0 {
				return n + m
			}
			return -1
		case length >= 0 && len(b)-n >= length:
			return n + length
		case length >= 0:
			return -1
		}
		return len(b)
	}
}

func atoi(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

// chunkedLen is the length of the chunked body at the start of b, up to the end of its trailer
// section, or -1 when b does not start with a complete one.
func chunkedLen(b []byte) int {
	n := 0
	for {
		line, _, ok := bytes.Cut(b[n:], []byte("\r\n"))
		if !ok {
			return -1
		}
		size, err := strconv.ParseInt(string(line), 16, 32)
		if err != nil || size < 0 {
			return -1
		}
		n += len(line) + 2
		if size == 0 {
			break
		}
		if int64(len(b)-n) < size+2 || string(b[n+int(size):n+int(size)+2]) != "\r\n" {
			return -1
		}
		n += int(size) + 2
	}
	for {
		line, _, ok := bytes.Cut(b[n:], []byte("\r\n"))
		if !ok {
			return -1
		}
		n += len(line) + 2
		if len(line) == 0 {
			return n
		}
	}
}

// keptAliveRequest is a request of kind (the form that reaches a path of the edge, as in
// trailerPaths) with method for path, that closes the connection after its answer when last
// is set.
func keptAliveRequest(kind, method, path string, last bool) string {
	h := " HTTP/1.1\r\nHost: shop.demo.test\r\n"
	if last {
		h += "Connection: close\r\n"
	}
	switch kind {
	case "fast":
		return method + " " + path + h + "Content-Length: 0\r\n\r\n"
	case "ReverseProxy":
		if method == http.MethodGet {
			method = http.MethodPost
		}
		return method + " " + path + h + "Content-Length: 2\r\n\r\nhi"
	}
	return method + " " + path + h + "\r\n"
}

// exchangeOn sends the requests reqs, whose methods are methods, on one connection to addr,
// all at once when pipelined is set, else each once the answers before it arrived, and returns
// what the client read to the connection's end.
func exchangeOn(tb testing.TB, addr string, reqs, methods []string, pipelined bool) []byte {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if pipelined {
		reqs = []string{strings.Join(reqs, "")}
	}
	var got []byte
	buf := make([]byte, 32<<10)
	for i, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			tb.Fatalf("send request %d: %v (after %q)", i, err, got)
		}
		for i < len(reqs)-1 {
			if views, _ := answersOf(got, methods[:i+1]); len(views) == i+1 {
				break
			}
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				tb.Fatalf("read the answer to request %d: %v (after %q)", i, err, got)
			}
		}
	}
	rest, err := io.ReadAll(c)
	if err != nil && !closedByPeer(err) {
		tb.Fatalf("read the answers: %v (after %q)", err, append(got, rest...))
	}
	return append(got, rest...)
}

// keptAliveFinals are final answers, each after interim ones, to the first request of a kept-
// alive connection: one of each framing.
var keptAliveFinals = []struct{ name, method, answer string }{
	{"Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 0\r\nContent-Length: 8\r\n\r\nanswer 0"},
	{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 0\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"6\r\nanswer\r\n2\r\n 0\r\n0\r\nX-Sum: 1\r\n\r\n"},
	{"empty chunked", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"delimited by the instance's connection end", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 0\r\nConnection: close\r\n\r\nanswer 0" + cutHere},
	{"204", "GET", "HTTP/1.1 204 No Content\r\nX-Answer: 0\r\n\r\n"},
	{"304", "GET", "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nX-Answer: 0\r\n\r\n"},
	{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 0\r\nContent-Length: 8\r\n\r\n"},
}

// TestTheAnswersAfterAnInterimOneOnAKeptAliveConnectionAreTheirOwnOnEveryPath sends three
// requests on one client connection, one after the other and pipelined, through every path of
// the edge (the first on one, the next two on another) and through httputil.ReverseProxy. The
// first is answered with two 103s then a final answer of each framing, the second with a 103
// then its own, the third plainly. Each client must see exactly the three answers, each its
// own request's, and what ReverseProxy's client sees.
func TestTheAnswersAfterAnInterimOneOnAKeptAliveConnectionAreTheirOwnOnEveryPath(t *testing.T) {
	t.Parallel()
	up := newTrailerUpstream(t)
	c := twoEdgesWith(t, []string{up.addr}, []string{up.addr}, "http", "", neverEjected)
	ref := referenceProxy(t, up.addr)
	const hint = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
	second := up.answer(hint + "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 1\r\nContent-Length: 8\r\n\r\nanswer 1")
	third := up.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Answer: 2\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nanswer 2\r\n0\r\n\r\n")
	kinds := []string{"lean", "fast", "ReverseProxy"}
	for _, fc := range keptAliveFinals {
		first := up.answer(hint + hint + fc.answer)
		methods := []string{fc.method, http.MethodGet, http.MethodGet}
		for _, k1 := range kinds {
			for _, k2 := range kinds {
				reqs := []string{keptAliveRequest(k1, fc.method, first, false), keptAliveRequest(k2, "GET", second, false), keptAliveRequest(k2, "GET", third, true)}
				for _, pipelined := range []bool{false, true} {
					name := fmt.Sprintf("%s, %s then %s, pipelined %v", fc.name, k1, k2, pipelined)
					want, wantRest := answersOf(exchangeOn(t, ref, reqs, methods, pipelined), methods)
					got, rest := answersOf(exchangeOn(t, c.west, reqs, methods, pipelined), methods)
					if len(got) != 3 || len(rest) > 0 {
						t.Errorf("%s: the client saw %d answers and then %q, want 3 and nothing after:\n%s", name, len(got), rest, got)
						continue
					}
					for i, v := range got {
						if !slices.Contains(strings.Split(v.head, "\r\n"), fmt.Sprintf("X-Answer: %d", i)) || len(v.interim) != []int{2, 1, 0}[i] {
							t.Errorf("%s: answer %d is another's:\n%s", name, i, v)
						}
					}
					if b := got[1].final.body; b != "answer 1" {
						t.Errorf("%s: the second answer's body is %q, want %q", name, b, "answer 1")
					}
					if fmt.Sprint(got) != fmt.Sprint(want) || !bytes.Equal(rest, wantRest) {
						t.Errorf("%s: the client saw\n%s\nthen %q; ReverseProxy's\n%s\nthen %q", name, got, rest, want, wantRest)
					}
				}
			}
		}
	}
}

// TestAnInterimAnswerNeverInterleavesWithThe100ContinueOfAClientThatExpectsOne sends, many
// times, a request with a body through the ReverseProxy path whose client expects 100 Continue
// before it sends the body, to an instance that answers a 103 as soon as it has the head. The
// edge's server writes its 100 Continue when the body is first read, while the 103 is relayed
// from the transport's reading goroutine: every client must see both heads whole, in either
// order, then the final answer, and the race detector (go test -race) no concurrent write.
// ReverseProxy itself writes the two unsynchronised, so it is no reference here.
func TestAnInterimAnswerNeverInterleavesWithThe100ContinueOfAClientThatExpectsOne(t *testing.T) {
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"); err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	c := twoEdgesWith(t, []string{w1}, []string{w1}, "http", "", neverEjected)
	want := []string{"HTTP/1.1 100 Continue", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>"}
	const continued = "HTTP/1.1 100 Continue\r\n\r\n"
	for i := range 200 {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, "PUT /up HTTP/1.1\r\nHost: shop\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
		var got []byte
		buf := make([]byte, 4<<10)
		for !bytes.Contains(got, []byte(continued)) {
			n, err := conn.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("request %d: no 100 Continue came: %v (after %q)", i, err, got)
			}
		}
		_, _ = io.WriteString(conn, "hi")
		rest, err := io.ReadAll(conn)
		_ = conn.Close()
		if err != nil && !closedByPeer(err) {
			t.Fatalf("request %d: read the answer: %v (after %q)", i, err, append(got, rest...))
		}
		v := viewOf(append(got, rest...))
		slices.Sort(v.interim)
		if !slices.Equal(v.interim, want) || v.final.status != "200" || v.final.body != "ok" {
			t.Fatalf("request %d: the client saw\n%s\nwant the interim answers %q, then 200 ok", i, v, want)
		}
	}
}

// TestARequestWhoseInterimAnswerReachedItsClientIsNotSentToAnotherTarget sends a request on
// every path to an edge whose instances, local and behind its secondary, each answer a 103
// naming themselves and then either nothing (response_header expires) or a 503 that retry_on
// names. Once the 103 reached the client, the request goes nowhere else, as nginx's
// proxy_next_upstream passes a request on only while nothing was sent to the client: the
// client gets the one 103 and then the edge's 502 for the timeout, the instance's own 503 for
// the status, never the interim answers of two targets.
func TestARequestWhoseInterimAnswerReachedItsClientIsNotSentToAnotherTarget(t *testing.T) {
	received := make(chan string, 16)
	instance := func(name string) string {
		return rawInstance(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			received <- name
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nX-From: "+name+"\r\n\r\n")
			if req.URL.Path == "/busy" {
				_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
				return
			}
			_, _ = io.Copy(io.Discard, br) // no final answer
		})
	}
	w1, w2, e1 := instance("w1"), instance("w2"), instance("e1")
	c := twoEdgesWith(t, []string{w1, w2}, []string{e1}, "http", "",
		neverEjected+`, retry_on: [connect_failure, timeout, "503"], timeouts: {response_header: 300ms}`)
	for _, tc := range []struct{ path, status, body string }{{"/hang", "502", "Bad Gateway\n"}, {"/busy", "503", "busy"}} {
		for name, raw := range map[string]string{
			"lean":         "GET " + tc.path + " HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
			"fast":         "GET " + tc.path + " HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			"ReverseProxy": "PUT " + tc.path + " HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
		} {
			v := seenView(t, c.west, raw)
			var from []string
			for len(received) > 0 {
				from = append(from, <-received)
			}
			if len(v.interim) != 1 || v.final.status != tc.status || v.final.body != tc.body || len(from) != 1 {
				t.Errorf("%s %s: the request reached %q and the client saw\n%s\nwant it sent to one instance, whose 103 the client sees, then %s %q",
					name, tc.path, from, v, tc.status, tc.body)
			}
		}
	}
}

// lateConn is a connection to an instance whose Close takes effect at the next Read: a Read
// under way when the transport closes it still returns what arrives, as bytes already read
// when the transport gave up on the attempt would be. drained is closed at that next Read.
type lateConn struct {
	net.Conn
	closing chan struct{}
	drained chan struct{}
	once    sync.Once
}

func (c *lateConn) Close() error {
	c.once.Do(func() { close(c.closing) })
	return nil
}

func (c *lateConn) Read(p []byte) (int, error) {
	select {
	case <-c.closing:
		_ = c.Conn.Close()
		close(c.drained)
		return 0, net.ErrClosed
	default:
	}
	return c.Conn.Read(p)
}

// logHook is a log writer that calls on with every line written to it.
type logHook struct{ on func(line string) }

func (h logHook) Write(p []byte) (int, error) {
	h.on(string(p))
	return len(p), nil
}

// An attempt the edge gave up on (response_header expired) may still hand the edge an interim
// answer its transport had read as it gave up: the 103 arrives after the attempt's timeout,
// before the next attempt begins. It must reach no client, and the request goes on to the next
// instance as any timed-out one does: the client sees exactly what ReverseProxy's client sees
// of that instance's answer, and no interim answer.
func TestALateInterimAnswerOfAnAttemptGivenUpOnNeitherReachesTheClientNorStopsTheRetry(t *testing.T) {
	hint, late := make(chan struct{}), make(chan struct{})
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		<-hint // after the edge gave up on this attempt
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nX-From: w1\r\n\r\n")
		close(late)
		_, _ = io.Copy(io.Discard, br)
	})
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-From: w2\r\nContent-Length: 2\r\n\r\nw2"
	w2 := rawInstance(t, answerEach(answer))
	var conn *lateConn
	// The edge logs w1's ejection between its attempt on w1 and the next: the 103 is sent then,
	// and the log line returns once the edge's transport took it.
	e := &edge{name: "edge-west", peers: newPeers("edge-west", "", time.Second, zerolog.Nop()), conns: connGate{limit: 10},
		log: zerolog.New(logHook{on: func(line string) {
			if !strings.Contains(line, "instance ejected") {
				return
			}
			close(hint)
			select {
			case <-late:
			case <-time.After(5 * time.Second):
				t.Error("w1 never sent its late 103")
				return
			}
			select {
			case <-conn.drained:
			case <-time.After(5 * time.Second):
				t.Error("the edge's transport never read past w1's late 103")
			}
		}})}
	second := 5 * time.Second
	a := newApp(e, config.EdgeApp{App: "shop", Mode: config.ModeHTTP, PassiveFall: 1, PassiveCooldown: config.Duration(time.Hour),
		RetryOn: []string{config.RetryOnTimeout}, MaxHeaderBytes: 64 << 10, MaxConns: 10, MaxConnsPerClient: 10,
		Timeouts: config.EdgeTimeouts{Connect: config.Duration(second), ResponseHeader: config.Duration(200 * time.Millisecond),
			Idle: config.Duration(second), ClientHeader: config.Duration(second), ClientBody: config.Duration(second)}})
	a.setRoute(events.AppRoute{App: "shop", Pool: "west", Available: true, Endpoints: []events.RouteEndpoint{
		{Name: "w1", Address: w1, Status: events.StatusUp, Weight: 1}, {Name: "w2", Address: w2, Status: events.StatusUp, Weight: 1}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newHTTPServer(a, ln)
	dial := a.transport.DialContext
	a.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || addr != w1 {
			return c, err
		}
		conn = &lateConn{Conn: c, closing: make(chan struct{}), drained: make(chan struct{})}
		return conn, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	// A request without a body, so that it may go to another target after a timeout, that
	// takes the ReverseProxy path: one that asks for an upgrade.
	const raw = "GET /late HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade, close\r\nUpgrade: foo\r\n\r\n"
	got := seenView(t, ln.Addr().String(), raw)
	if want := seenView(t, referenceProxy(t, w2), raw); got.String() != want.String() {
		t.Errorf("the client saw\n%s\nwant what ReverseProxy's client sees of w2's answer\n%s", got, want)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
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
	{name: "three 103s of 4 MiB each, 12 MiB in all",
		answer: strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </"+strings.Repeat("a", 4<<20)+">\r\n\r\n", 3) +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
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
// interim answer comes at once, or after the lean path began watching a slow answer.
func TestAClientThatLeavesAfterAnInterimAnswerCancelsItsRequestUpstreamOnEveryPath(t *testing.T) {
	received, released := make(chan string, 4), make(chan string, 4)
	w1 := rawInstance(t, func(c net.Conn) {
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
		_, _ = io.Copy(io.Discard, br) // no final answer; returns when the edge closes the connection
		released <- req.URL.Path
	})
	c := twoEdgesWith(t, []string{w1}, []string{w1}, "http", "", neverEjected)
	for _, path := range []string{"/soon", "/late"} {
		for name, raw := range map[string]string{
			"lean":         "GET " + path + " HTTP/1.1\r\nHost: shop\r\n\r\n",
			"fast":         "HEAD " + path + " HTTP/1.1\r\nHost: shop\r\n\r\n",
			"ReverseProxy": "PUT " + path + " HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
		} {
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(conn, raw)
			select {
			case <-received:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s %s never reached the instance", name, path)
			}
			br := bufio.NewReader(conn)
			var head strings.Builder
			for !strings.HasSuffix(head.String(), "\r\n\r\n") {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("%s %s: read the interim answer: %v (after %q)", name, path, err, head.String()+l)
				}
				head.WriteString(l)
			}
			if !strings.HasPrefix(head.String(), "HTTP/1.1 103 ") {
				t.Fatalf("%s %s: the client's first answer is %q, want a 103", name, path, head.String())
			}
			_ = conn.Close()
			select {
			case <-released:
			case <-time.After(3 * time.Second):
				t.Fatalf("%s %s: the edge still waited on the instance 3s after its client left with an interim answer, want the upstream request cancelled", name, path)
			}
		}
	}
}

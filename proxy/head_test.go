package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

func TestHeadEndFindsTheEmptyLineOrRefusesBareLineFeeds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next", 27},
		{"GET / HTTP/1.1\nHost: a\n\n", -1},
		{"GET / HTTP/1.1\r\nHost: a\n\r\n", -1},
		{"\n", -1},
		{"\r\n\r\n", 4},
	} {
		if got := headEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("headEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseHeadAcceptsOnlyPlainHTTP11Gets(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		ok         bool
		close      bool
		trailers   bool
	}{
		{"a plain GET", "GET /a/b?c=d HTTP/1.1\r\nHost: shop.test:80\r\nAccept: */*\r\n\r\n", true, false, false},
		{"Connection: close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", true, true, false},
		{"TE: trailers", "GET / HTTP/1.1\r\nHost: a\r\nTE: deflate, Trailers\r\n\r\n", true, false, true},
		{"escapes and sub-delimiters", "GET /%7Eu/a!b;c=d@e:f HTTP/1.1\r\nHost: a\r\n\r\n", true, false, false},
		{"an IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true, false, false},
		{"a POST", "POST / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", false, false, false},
		{"the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, false, false},
		{"an absolute URL", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"a path starting with //", "GET //a HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"a bad escape", "GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"a non-ASCII path", "GET /\xc3\xa4 HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"a fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false, false, false},
		{"an empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", false, false, false},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", false, false, false},
		{"an odd Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false, false, false},
		{"a body", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false, false, false},
		{"a chunked body", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, false},
		{"an expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", false, false, false},
		{"an upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false, false, false},
		{"forwarded by an edge", "GET / HTTP/1.1\r\nHost: a\r\nDetour-Forwarded-By: e\r\n\r\n", false, false, false},
		{"a ping", "GET / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping: 1\r\n\r\n", true, false, false},
		{"a space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", false, false, false},
		{"a folded line", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", false, false, false},
		{"a field without colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", false, false, false},
		{"a control character", "GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", false, false, false},
		{"two spaces in the request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
	} {
		var h reqHead
		ok := parseHead([]byte(tc.head), &h)
		if ok != tc.ok || ok && (h.close != tc.close || h.trailers != tc.trailers) {
			t.Errorf("%s: parseHead = %v close=%v trailers=%v, want %v close=%v trailers=%v",
				tc.name, ok, h.close, h.trailers, tc.ok, tc.close, tc.trailers)
		}
	}
}

func TestParseHeadTakesPingsByGETOrHEADWithAValue(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		ok, ping   bool
	}{
		{"a prober's ping", "HEAD / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\nDetour-Edge-Ping: prober\r\n\r\n", true, true},
		{"a peer edge's ping", "GET / HTTP/1.1\r\nHost: shop\r\ndetour-edge-ping: edge-east\r\n\r\n", true, true},
		{"a HEAD that is no ping", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"a ping without a value", "GET / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping:\r\n\r\n", false, false},
		{"a second ping field without a value", "GET / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping: 1\r\nDetour-Edge-Ping:\r\n\r\n", false, false},
		{"a ping with a body", "HEAD / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping: 1\r\nContent-Length: 0\r\n\r\n", false, false},
		{"a ping by POST", "POST / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping: 1\r\n\r\n", false, false},
		{"a ping without Host", "HEAD / HTTP/1.1\r\nDetour-Edge-Ping: 1\r\n\r\n", false, false},
		{"a plain GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, false},
	} {
		var h reqHead
		if ok := parseHead([]byte(tc.head), &h); ok != tc.ok || ok && h.ping != tc.ping {
			t.Errorf("%s: parseHead = %v ping=%v, want %v ping=%v", tc.name, ok, h.ping, tc.ok, tc.ping)
		}
	}
}

func TestTheHeadSentUpstreamDropsHopByHopFieldsAndAddsForwarding(t *testing.T) {
	lc := &leanConn{app: &app{pol: &policy{}}, f: forwarding{xff: "10.0.0.1", xfh: "a", xfp: "http", fwd: "for=10.0.0.1;host=a;proto=http"}}
	head := "GET /p HTTP/1.1\r\nhost: a\r\nx-kept: 1\r\nConnection: x-drop\r\nX-Drop: 2\r\nKeep-Alive: 3\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nte: trailers\r\naccept-ENCODING: gzip\r\n\r\n"
	if !parseHead([]byte(head), &lc.head) {
		t.Fatal("parseHead refused the request")
	}
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	lc.writeUpstream(bw, "edge-west")
	_ = bw.Flush()
	want := "GET /p HTTP/1.1\r\nHost: a\r\nX-Kept: 1\r\nAccept-Encoding: gzip\r\nTe: trailers\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: a\r\nX-Forwarded-Proto: http\r\n" +
		"Forwarded: for=10.0.0.1;host=a;proto=http\r\nDetour-Forwarded-By: edge-west\r\n\r\n"
	if b.String() != want {
		t.Errorf("head sent upstream:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestParseRespHeadAcceptsOnlyAnswersRelayedAsTheyAre(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		ok         bool
		code       int
		length     int64
		hasDate    bool
	}{
		{"a typed answer", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nDate: x\r\n\r\n", true, 200, 5, true},
		{"no reason", "HTTP/1.1 404\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", true, 404, 0, false},
		{"an empty untyped body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, 200, 0, false},
		{"an encoded body", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n", true, 200, 9, false},
		{"an untyped body to sniff", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 0, 0, false},
		{"chunked", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false},
		{"no length", "HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\n", false, 0, 0, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false, 0, 0, false},
		{"a signed length", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: +1\r\n\r\n", false, 0, 0, false},
		{"a huge length", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 1234567890123456789\r\n\r\n", false, 0, 0, false},
		{"Connection", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false, 0, 0, false},
		{"a trailer", "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 1\r\nTrailer: X\r\n\r\n", false, 0, 0, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", false, 0, 0, false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n", false, 0, 0, false},
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false, 0, 0, false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Type: a\r\nContent-Length: 1\r\n\r\n", false, 0, 0, false},
		{"a short status", "HTTP/1.1 20 OK\r\nContent-Type: a\r\nContent-Length: 1\r\n\r\n", false, 0, 0, false},
		{"a long status", "HTTP/1.1 2000 OK\r\nContent-Type: a\r\nContent-Length: 1\r\n\r\n", false, 0, 0, false},
		{"a bad field", "HTTP/1.1 200 OK\r\nContent Type: a\r\nContent-Length: 1\r\n\r\n", false, 0, 0, false},
	} {
		var h respHead
		ok := parseRespHead([]byte(tc.head), &h)
		if ok != tc.ok || ok && (h.code != tc.code || h.length != tc.length || h.hasDate != tc.hasDate) {
			t.Errorf("%s: parseRespHead = %v %d %d date=%v, want %v %d %d date=%v", tc.name,
				ok, h.code, h.length, h.hasDate, tc.ok, tc.code, tc.length, tc.hasDate)
		}
	}
}

func TestAppendCanonicalWritesFieldNamesAsNetHTTPDoes(t *testing.T) {
	for _, name := range []string{"host", "X-FORWARDED-for", "accept-encoding", "a", "x--y", "Www-Authenticate", "x_y-z", "1-2a"} {
		if got, want := string(appendCanonical(nil, []byte(name))), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("appendCanonical(%q) = %q, want %q", name, got, want)
		}
	}
}

// FuzzParseHead checks that no input makes the request parsers panic, and that a request they
// accept is one net/http reads as a GET (or, for a ping, a HEAD) with the same target, Host and
// fields, which the edge's handler takes for a ping exactly when parseHead does; and that the
// lean path forwards such a request, with underscores_in_headers off or on, with the head the
// fast path writes of net/http's reading (fields in any order), without a field name holding
// an underscore when it is off.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a?b HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\nX: y\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nX:\t v \t\r\n\r\n",
		"\r\n\r\n",
		"GET / HTTP/1.1\r\n",
		"HEAD / HTTP/1.1\r\nHost: a\r\nDetour-Edge-Ping: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\ndetour-edge-ping: 1\r\nDetour-Edge-Ping: \r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\nx_a-b: 2\r\nx-c: 3\r\nConnection: X_A-b\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := headEnd([]byte(s))
		if n <= 0 {
			return
		}
		var h reqHead
		if !parseHead([]byte(s[:n]), &h) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(s[:n])))
		if err != nil {
			t.Fatalf("parseHead accepted %q, which net/http refuses: %v", s[:n], err)
		}
		method := http.MethodGet
		if r.Method == http.MethodHead && h.ping {
			method = http.MethodHead // a ping may come by HEAD, which the front answers itself
		}
		if r.Method != method || r.Host != string(h.host) || r.URL.RequestURI() != string(h.target) {
			t.Fatalf("parseHead read %q as %s %q host %q; net/http as %s %q host %q",
				s[:n], method, h.target, h.host, r.Method, r.URL.RequestURI(), r.Host)
		}
		if ping := r.Header.Get(HeaderPing) != ""; ping != h.ping {
			t.Fatalf("parseHead read %q as ping=%v; the edge's handler as ping=%v", s[:n], h.ping, ping)
		}
		fields := 0
		for _, vs := range r.Header {
			fields += len(vs)
		}
		if fields != len(h.fields)-1 {
			t.Fatalf("parseHead read %d fields besides Host in %q; net/http %d", len(h.fields)-1, s[:n], fields)
		}
		if h.ping {
			return // answered by the edge, forwarded nowhere
		}
		f := forwarding{xff: "10.0.0.1", xfh: string(h.host), xfp: "http", fwd: "for=10.0.0.1;host=" + quoteForwarded(string(h.host)) + ";proto=http"}
		for _, underscores := range []bool{false, true} {
			lc := &leanConn{app: &app{pol: &policy{underscores: underscores}}, head: h, f: f}
			lean, fast := upstreamHeadLines(func(bw *bufio.Writer) { lc.writeUpstream(bw, "") }),
				upstreamHeadLines(func(bw *bufio.Writer) { writeHead(bw, r, "instance:80", &f, "", underscores) })
			if !slices.Equal(lean, fast) {
				t.Fatalf("with underscores_in_headers %v, the lean path forwards %q as\n%q\nthe fast path as\n%q", underscores, s[:n], lean, fast)
			}
			for _, l := range lean[1:] {
				if name, _, _ := strings.Cut(l, ":"); !underscores && strings.Contains(name, "_") {
					t.Fatalf("with underscores_in_headers off, %q is forwarded with %q", s[:n], l)
				}
			}
		}
	})
}

// upstreamHeadLines returns the lines of the request head write writes, the request line first
// and the fields sorted.
func upstreamHeadLines(write func(bw *bufio.Writer)) []string {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	write(bw)
	_ = bw.Flush()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\r\n\r\n"), "\r\n")
	slices.Sort(lines[1:])
	return lines
}

// FuzzParseRespHead checks that no input makes the response parser panic, and that an answer it
// accepts is one net/http reads with the same status and length and without trailers. Of an
// answer net/http reads whole with its trailers, the lean path writes, of the trailers
// endTrailer leaves, the section net/http's server writes (sorted aside), which net/http reads
// back as they were, but for the spaces a folded value may end in, and no longer than maxTrailerBytes.
func FuzzParseRespHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 999\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: X-Sum, Host\r\nConnection: X-S\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\nHost: h\r\nX-S: s\r\nX Bad: 1\r\nSet-Cookie: a=b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: a\r\n b\r\nX-Lf: a\nX-Other: b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: " + strings.Repeat("b", 4085) + "\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTrailerWritten(t, s)
		n := headEnd([]byte(s))
		if n <= 0 {
			return
		}
		var h respHead
		if !parseRespHead([]byte(s[:n]), &h) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s[:n])), &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("parseRespHead accepted %q, which net/http refuses: %v", s[:n], err)
		}
		if resp.StatusCode != h.code || resp.ContentLength != h.length || resp.Close {
			t.Fatalf("parseRespHead read %q as %d length %d; net/http as %d length %d close=%v",
				s[:n], h.code, h.length, resp.StatusCode, resp.ContentLength, resp.Close)
		}
		if _, ok := resp.Header["Trailer"]; ok || resp.Trailer != nil {
			t.Fatalf("parseRespHead accepted %q, which announces trailers", s[:n])
		}
	})
}

// checkTrailerWritten holds the trailer section the lean path writes of answer s, when
// net/http reads it whole, to the one net/http's server writes (see FuzzParseRespHead).
func checkTrailerWritten(t *testing.T, s string) {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s)), &http.Request{Method: http.MethodGet})
	if err != nil {
		return
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.Trailer == nil {
		return
	}
	if endTrailer(resp.Trailer, connectionListed(resp.Header)) != nil {
		return
	}
	var lean bytes.Buffer
	bw := bufio.NewWriter(&lean)
	writeTrailer(bw, resp.Trailer)
	_ = bw.Flush()
	var ref bytes.Buffer
	_ = resp.Trailer.Write(&ref)
	ref.WriteString("\r\n")
	sorted := func(b []byte) []string {
		l := strings.SplitAfter(string(b), "\r\n")
		slices.Sort(l)
		return l
	}
	if !slices.Equal(sorted(lean.Bytes()), sorted(ref.Bytes())) {
		t.Fatalf("of %q the lean path writes the trailer section %q, net/http's server %q", s, lean.Bytes(), ref.Bytes())
	}
	if lean.Len() > maxTrailerBytes {
		t.Fatalf("of %q the lean path writes a trailer section of %d bytes", s, lean.Len())
	}
	back, err := textproto.NewReader(bufio.NewReader(&lean)).ReadMIMEHeader()
	sent := 0 // an announced trailer may not come
	for _, vs := range resp.Trailer {
		sent += min(len(vs), 1)
	}
	if err != nil || len(back) != sent {
		t.Fatalf("of %q the lean path writes a trailer section net/http reads as %v (%v), not %v", s, back, err, resp.Trailer)
	}
	for k, vs := range back {
		want := slices.Clone(resp.Trailer[k])
		for i, v := range want {
			want[i] = textproto.TrimString(v) // as net/http's server writes it
		}
		if !slices.Equal(want, vs) {
			t.Fatalf("of %q the lean path writes a trailer section net/http reads as %v, not %v", s, back, resp.Trailer)
		}
	}
}

// The lean path reads a TE field without allocating: a prober's every check of an edge is a
// request it parses.
func TestParseHeadReadsATEFieldWithoutAllocating(t *testing.T) {
	b := []byte("GET / HTTP/1.1\r\nHost: shop.demo.test\r\nTE: gzip;q=0.5, Trailers\r\n\r\n")
	var h reqHead
	if ok := parseHead(b, &h); !ok || !h.trailers {
		t.Fatalf("served %v, trailers %v; want a request the lean path serves, whose client accepts trailers", ok, h.trailers)
	}
	if n := testing.AllocsPerRun(100, func() { parseHead(b, &h) }); n != 0 {
		t.Errorf("parseHead allocated %v times for a head with TE, want 0", n)
	}
}

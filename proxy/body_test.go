package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bodyReader is an instance that reads each request's body to its end, sends on ended how the
// read ended ("5 bytes", or the error that cut it) and answers 200 with the length read.
func bodyReader(ended chan<- string) func(c net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, err := io.Copy(io.Discard, req.Body)
			if err != nil {
				ended <- "error: " + err.Error()
				return
			}
			ended <- fmt.Sprintf("%d bytes", n)
			body := fmt.Sprint(n)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	}
}

// h2Stream is one HTTP/2 request on its own connection, whose frames are read in the
// background: the server's settings are acknowledged, the status of the answer, or 0 for a
// reset of the stream or the connection, is sent on status, and then how the answer ended
// ("complete", "reset" or "closed") on end.
type h2Stream struct {
	conn   net.Conn
	mu     sync.Mutex // guards fr's writes
	fr     *http2.Framer
	status chan int
	end    chan string
}

// openH2 sends the head of a POST to addr with the fields given, leaving the stream open for
// its body.
func openH2(t *testing.T, addr string, fields ...[2]string) *h2Stream {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, _ = io.WriteString(conn, http2.ClientPreface)
	s := &h2Stream{conn: conn, fr: http2.NewFramer(conn, conn), status: make(chan int, 1), end: make(chan string, 1)}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/body"}}, fields...) {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	s.mu.Lock()
	_ = s.fr.WriteSettings()
	_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	s.mu.Unlock()
	go func() {
		dec := hpack.NewDecoder(4096, nil)
		answered := false
		finish := func(how string) {
			if !answered {
				s.status <- 0
			}
			s.end <- how
		}
		for {
			f, err := s.fr.ReadFrame()
			if err != nil {
				finish("closed")
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					s.mu.Lock()
					_ = s.fr.WriteSettingsAck()
					s.mu.Unlock()
				}
			case *http2.HeadersFrame:
				hfs, _ := dec.DecodeFull(f.HeaderBlockFragment())
				for _, hf := range hfs {
					if hf.Name == ":status" && !answered {
						var code int
						_, _ = fmt.Sscan(hf.Value, &code)
						s.status <- code
						answered = true
					}
				}
				if f.StreamEnded() {
					finish("complete")
					_, _ = io.Copy(io.Discard, conn)
					return
				}
			case *http2.DataFrame:
				if f.StreamEnded() {
					finish("complete")
					_, _ = io.Copy(io.Discard, conn)
					return
				}
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				finish("reset")
				_, _ = io.Copy(io.Discard, conn)
				return
			}
		}
	}()
	return s
}

func (s *h2Stream) send(p string, end bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.fr.WriteData(1, end, []byte(p))
}

// slowClient is one way a client sends a request body: start sends the head and the first
// bytes of a body declared 1000000 bytes long (or of unknown length), more sends more of it (a
// chunk, an HTTP/2 DATA frame; an empty one ends a body of unknown length) and answer waits
// for the status of the answer (0 for none or a reset), up to wait.
type slowClient struct {
	name  string
	start func(t *testing.T, addr string) (more func(string), answer func(wait time.Duration) int, closeConn func())
}

func h1Client(head string) func(t *testing.T, addr string) (func(string), func(time.Duration) int, func()) {
	return func(t *testing.T, addr string) (func(string), func(time.Duration) int, func()) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_, _ = io.WriteString(conn, head)
		chunked := strings.Contains(head, "chunked")
		more := func(p string) {
			if chunked {
				p = fmt.Sprintf("%x\r\n%s\r\n", len(p), p)
			}
			_, _ = io.WriteString(conn, p)
		}
		br := bufio.NewReader(conn)
		answer := func(wait time.Duration) int {
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
			if err != nil {
				return 0
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if !resp.Close {
				t.Errorf("the %d answer keeps the connection open, want Connection: close", resp.StatusCode)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the %d answer the connection gave %v, want it closed (EOF)", resp.StatusCode, err)
			}
			return resp.StatusCode
		}
		return more, answer, func() { conn.Close() }
	}
}

func h2Client(fields ...[2]string) func(t *testing.T, addr string) (func(string), func(time.Duration) int, func()) {
	return func(t *testing.T, addr string) (func(string), func(time.Duration) int, func()) {
		s := openH2(t, addr, fields...)
		answer := func(wait time.Duration) int {
			select {
			case code := <-s.status:
				return code
			case <-time.After(wait):
				return 0
			}
		}
		return func(p string) { s.send(p, p == "") }, answer, func() { s.conn.Close() }
	}
}

var slowClients = []slowClient{
	{name: "HTTP/1.1, Content-Length", start: h1Client("POST /body HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000000\r\n\r\n")},
	{name: "HTTP/1.1, chunked", start: h1Client("POST /body HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n")},
	{name: "HTTP/2, content-length", start: h2Client([2]string{"content-length", "1000000"})},
	{name: "HTTP/2, no content-length", start: h2Client()},
}

// A client that sends a request head, a few bytes of its body and then nothing is answered 408
// once client_body passes without a byte; the upstream request is aborted (its connection
// closed mid-body), nothing of the request is left on the edge, and the instance is not held
// responsible.
func TestARequestBodyThatStopsArrivingIsAnswered408AndAbortedUpstream(t *testing.T) {
	ended := make(chan string, 16)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, bodyReader(ended))}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_body: 200ms}, passive_fall: 2")
	for _, sc := range slowClients {
		t.Run(sc.name, func(t *testing.T) {
			for len(ended) > 0 {
				<-ended // what a request before left
			}
			baseline := quietGoroutines(t)
			more, answer, closeConn := sc.start(t, c.west)
			more("hello")
			sent := time.Now()
			code := answer(3 * time.Second)
			took := time.Since(sent)
			if code != http.StatusRequestTimeout {
				t.Fatalf("answered %d %.0fms after the last bytes of the body, want 408 once client_body (200ms) passed", code, took.Seconds()*1000)
			}
			if took < 200*time.Millisecond {
				t.Errorf("answered 408 %s after the last bytes of the body, before client_body (200ms)", took)
			}
			select {
			case how := <-ended:
				if !strings.HasPrefix(how, "error: ") {
					t.Errorf("the upstream read the body to its end (%s), want it cut", how)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the upstream was still reading the body 3s after the 408")
			}
			closeConn()
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > baseline {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines 5s after the client left, %d before it came:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	// Four clients' failures, two of them HTTP/2 (whose context the failure does not cancel),
	// reach passive_fall (2): the instance is not ejected for them.
	resp, body := get(t, "http://"+c.west+"/after")
	if resp.StatusCode != http.StatusOK || body != "0" {
		t.Errorf("after the slow clients a GET got %d %q, want the instance's 200 \"0\": a client's slow body is not the instance's failure", resp.StatusCode, body)
	}
}

// quietGoroutines returns how many goroutines the test's edges keep running when nothing
// happens: the fewest seen over 200ms, once two such windows in a row agree. The fewest skips
// the goroutine each heartbeat runs for a moment; the agreement waits out the start of the
// edges, which open keep-alive connections to each other and follow their streams.
func quietGoroutines(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	prev := -1
	for time.Now().Before(deadline) {
		least := runtime.NumGoroutine()
		for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
			least = min(least, runtime.NumGoroutine())
		}
		if least == prev {
			return least
		}
		prev = least
	}
	t.Fatal("the goroutine count did not settle in 10s")
	return 0
}

// A client that sends its body slowly but steadily, each piece well within client_body, is
// never cut, however much longer than client_body the whole body takes.
func TestARequestBodySentSlowlyButSteadilyIsNotCut(t *testing.T) {
	ended := make(chan string, 16)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, bodyReader(ended))}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_body: 400ms}")
	for _, sc := range []slowClient{
		{name: "HTTP/1.1", start: h1Client("POST /body HTTP/1.1\r\nHost: shop\r\nContent-Length: 15\r\nConnection: close\r\n\r\n")},
		{name: "HTTP/2", start: h2Client([2]string{"content-length", "15"})},
	} {
		t.Run(sc.name, func(t *testing.T) {
			more, answer, _ := sc.start(t, c.west)
			for range 15 {
				more("x")
				time.Sleep(80 * time.Millisecond) // the client's pace, not synchronisation
			}
			more("")
			if code := answer(3 * time.Second); code != http.StatusOK {
				t.Fatalf("answered %d to a body sent a byte every 80ms, want 200 with client_body 400ms", code)
			}
			if how := <-ended; how != "15 bytes" {
				t.Errorf("the upstream read %s, want 15 bytes", how)
			}
		})
	}
}

// earlyAnswer is an instance that answers each request at once, with a body of unknown length
// it starts at once, then reads the request's body to its end and sends on ended how the read
// ended, as bodyReader does.
func earlyAnswer(ended chan<- string) func(c net.Conn) {
	return func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			ended <- "error: " + err.Error()
			return
		}
		ended <- fmt.Sprintf("%d bytes", n)
		_, _ = io.WriteString(c, "0\r\n\r\n")
	}
}

// When the answer has started, a body that stops arriving for client_body cannot be answered
// 408: the answer is cut (the connection closed, the HTTP/2 stream reset), never ended as if
// complete, and the upstream request is aborted all the same.
func TestARequestBodyThatStopsArrivingAfterTheAnswerStartedCutsTheAnswer(t *testing.T) {
	ended := make(chan string, 16)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{rawInstance(t, earlyAnswer(ended))}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_body: 200ms}")
	t.Run("HTTP/1.1", func(t *testing.T) {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "POST /body HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000000\r\n\r\nhello")
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodPost})
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil || isTimeout(err) {
			t.Errorf("the answer ended with %v after %q, want it cut once client_body passed", err, body)
		}
	})
	t.Run("HTTP/2", func(t *testing.T) {
		s := openH2(t, c.west, [2]string{"content-length", "1000000"})
		s.send("hello", false)
		if code := <-s.status; code != http.StatusOK {
			t.Fatalf("answered %d, want the instance's 200", code)
		}
		select {
		case how := <-s.end:
			if how == "complete" {
				t.Errorf("the answer ended complete, want the stream reset")
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the answer was still open 3s after the body stopped, want the stream reset once client_body passed")
		}
	})
	for range 2 {
		select {
		case how := <-ended:
			if !strings.HasPrefix(how, "error: ") {
				t.Errorf("the upstream read the body to its end (%s), want it cut", how)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the upstream was still reading a body 3s after it stopped")
		}
	}
}

// BenchmarkALargePost is a 16 MiB POST through the edge (the ReverseProxy path, whose transport
// writes the body to the instance through watchedConn) to an instance that reads and drops it.
// cpu-µs/op is the process's CPU per request, the client's and the instance's included.
// watchedConn hides its TCP connection's ReadFrom; forwarding it changed nothing measurable
// here (benchstat, n=6: cpu-µs/op 42.3k ± 57% before, 42.4k ± 6% after, p=1.000): the body
// comes from net/http's server, never a socket or a file, so ReadFrom has nothing to splice or
// send and copies as io.Copy does. The framing guard (guardedConn) allocated a new buffer for
// nearly every read of the body, 16 MiB a request: reusing its buffer took B/op from 16.2 MiB
// to 170 KiB and cpu-µs/op from 45.1k to 33.3k (-26%, p=0.002, n=6).
func BenchmarkALargePost(b *testing.B) {
	in := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(in.Close)
	e1 := backend(b, "e1")
	c := twoEdges(b, []string{in.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
	client := &http.Client{Transport: &http.Transport{}}
	b.Cleanup(client.CloseIdleConnections)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := eventstest.ProcessCPU(b)
	for b.Loop() {
		resp, err := client.Post("http://"+c.west+"/upload", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("answered %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64((eventstest.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// Once its request ended, a body read to its end holds no timer: its client_body timer would
// keep the request and its writer for client_body (60 s by default), about 4 KiB a request
// (measured), so that a client sending small POSTs one after another on one connection had the
// edge hold over a gigabyte. A read still under way when the request ends (the transport may
// still be sending the body) stays bounded, and stops the timer when it returns.
func TestARequestBodyHoldsNoTimerOnceItsRequestEnded(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		for _, late := range []bool{false, true} {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.ProtoMajor, r.ProtoMinor, _ = http.ParseHTTPVersion(proto)
			b := newTimedBody(io.NopCloser(strings.NewReader("hello")), httptest.NewRecorder(), r, time.Minute)
			if _, err := io.ReadAll(io.LimitReader(b, 2)); err != nil {
				t.Fatal(err)
			}
			if !late {
				_, _ = io.ReadAll(b)
			}
			b.end()
			if late {
				_, _ = io.ReadAll(b)
			}
			if b.t.Stop() {
				t.Errorf("%s, read to its end %s the request ended: its client_body timer was still pending", proto, map[bool]string{false: "before", true: "after"}[late])
			}
		}
	}
}

// A request body read to its declared length ends there, whatever net/http's server did with
// it since: once the answer starts the server closes a body read to its end, and the
// transport's read after the declared bytes, to see the body holds no more, then failed
// ("http: invalid Read on closed Body"); the transport closed its connection to the instance
// for it, cutting the answer being relayed 1-3 ms after its head (a CI run: the client of a
// PUT whose chunked answer had started lost it, in about 1 run in 30 on a busy machine).
func TestARequestBodyReadToItsLengthEndsThereOnceTheAnswerStarted(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := newSizedBody(r.Body, r.ContentLength)
		b, err := io.ReadAll(io.LimitReader(body, r.ContentLength))
		if err != nil || string(b) != "hi" {
			got <- fmt.Sprintf("the body read as %q (%v)", b, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush() // the answer starts
		n, err := body.Read(make([]byte, 1))
		got <- fmt.Sprintf("%d bytes, %v", n, err)
	}))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if g := <-got; g != "0 bytes, EOF" {
		t.Errorf("once the answer started, the body read to its length read %s; want its end (0 bytes, EOF)", g)
	}
}

// TestAnAnswerWhoseHeadComesBeforeTheRequestBodyReachesTheClientAtOnce: an instance that
// answers a request's head before its body ends, to a client that sends the rest of the body
// only once that head arrived (a bidirectional stream), gets the rest: the head reaches the
// client at once, Content-Length and chunked bodies alike, where net/http's server held it
// back until it had read what was left of the body, until client_body. Such an answer ends
// the connection, as the bytes after it may be the rest of a body the instance no longer
// reads; a body read to its end before the answer keeps it.
func TestAnAnswerWhoseHeadComesBeforeTheRequestBodyReachesTheClientAtOnce(t *testing.T) {
	instance := rawInstance(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/whole" {
				body, _ := io.ReadAll(req.Body)
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				continue
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(req.Body, first); err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n%s\r\n", first)
			rest, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(rest), rest)
		}
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {client_body: 5s}")
	for _, framing := range []struct{ name, head, first, rest string }{
		{"Content-Length", "Content-Length: 10\r\n", "01234", "56789"},
		{"chunked", "Transfer-Encoding: chunked\r\n", "5\r\n01234\r\n", "5\r\n56789\r\n0\r\n\r\n"},
		// The upgrade of a request with a body is ignored (here a POST asking for h2c).
		{"Content-Length, with an Upgrade", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 10\r\n", "01234", "56789"},
	} {
		t.Run(framing.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "POST /stream HTTP/1.1\r\n"+host+framing.head+"\r\n"+framing.first)
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no head 2 s after the instance sent it (client_body is 5 s): %v", err)
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "01234" {
				t.Fatalf("the answer's first chunk: %q, %v", first, err)
			}
			_, _ = io.WriteString(conn, framing.rest)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "56789" {
				t.Errorf("the rest of the answer: %q, %v; want %q", rest, err, "56789")
			}
			if !resp.Close {
				t.Error("the connection stays open after an answer that began before its request's body ended")
			}
		})
	}
	t.Run("a body ended before the answer keeps the connection", func(t *testing.T) {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		for _, path := range []string{"/whole", "/whole"} {
			_, _ = io.WriteString(conn, "POST "+path+" HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "hi" || resp.Close {
				t.Fatalf("answered %q, closing %v; want %q on a kept connection", body, resp.Close, "hi")
			}
		}
	})
}

// TestAClientThatHalfClosesAfterItsRequestGetsItsAnswer: a client that half-closes its
// connection once its request is sent (nc -N, an HTTP/1.0 script, a monitoring check) says it
// will send nothing more, not that it left, and reads on: it gets the instance's answer on
// every path, as HAProxy serves it by default and as the instance itself would, where the edge
// took the half-close for the client's leaving (as net/http's server does), cancelled the
// request and closed the connection without an answer once the instance took longer than the
// half-close to answer (50 ms on the lean path, at once on the others); a request the instance
// never answers is answered 502, never 200. A request whose body the half-close cut short is
// not complete: it is given up on upstream and gets no answer.
func TestAClientThatHalfClosesAfterItsRequestGetsItsAnswer(t *testing.T) {
	t.Parallel()
	// A slow instance: it reads the request and answers 300 ms later, well after the client's
	// half-close reached the edge; /never it does not answer.
	instance := rawInstance(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil || req.URL.Path == "/never" {
			_, _ = io.Copy(io.Discard, br)
			return
		}
		time.Sleep(300 * time.Millisecond) // the instance's slowness, not a wait for an event
		if req.URL.Path == "/paused" {
			// Part of the body, then the rest once the edge has watched the client meanwhile.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\nok:")
			time.Sleep(200 * time.Millisecond)
			_, _ = io.WriteString(c, "more")
			return
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body)+3, "ok:"+string(body))
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {client_body: 5s, response_header: 1s}")
	for _, tc := range []struct{ name, raw, want string }{
		{"no body, on the lean path", "GET /p HTTP/1.1\r\n" + host + "\r\n", "200 ok:"},
		{"no body, on the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", "200 ok:"},
		{"a pause in the answer's body, on the lean path", "GET /paused HTTP/1.1\r\n" + host + "\r\n", "200 ok:more"},
		{"a pause in the answer's body, on the fast path", "GET /paused HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", "200 ok:more"},
		{"an HTTP/1.0 GET", "GET /p HTTP/1.0\r\n" + host + "\r\n", "200 ok:"},
		{"a whole body", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", "200 ok:hello"},
		{"a whole chunked body", "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "200 ok:hello"},
		{"an HTTP/1.0 body", "POST /p HTTP/1.0\r\n" + host + "Content-Length: 5\r\n\r\nhello", "200 ok:hello"},
		{"a whole body the instance never answers", "POST /never HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", "502 Bad Gateway\n"},
		{"no body, the instance never answering", "GET /never HTTP/1.1\r\n" + host + "\r\n", "502 Bad Gateway\n"},
		{"part of a body", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\nhello", ""},
		{"part of a chunked body", "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := sendHalfClosed(t, c.west, tc.raw)
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("the connection did not end after its answer: %v (read %q)", err, got)
			}
			answer := ""
			if len(got) > 0 {
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
				if err != nil {
					t.Fatalf("answered %q: %v", got, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("answered %q, cut: %v", got, err)
				}
				answer = fmt.Sprintf("%d %s", resp.StatusCode, body)
			}
			if answer != tc.want {
				t.Errorf("a client that half-closed after %s got %q, want %q", tc.name, answer, tc.want)
			}
		})
	}
}

// TestAClientThatHalfClosesGetsAnAnswerWhoseBodyPauses: a client that half-closes its
// connection once its request is sent reads its whole answer when the instance sends the head
// at once and then pauses in the body (a stream, a slow page), on every path, as it does when
// the head is slow (TestAClientThatHalfClosesAfterItsRequestGetsItsAnswer). The lean path took
// the client's end, found when a read of the body had waited 50 ms, for its leaving, and cut
// the answer. (httputil.ReverseProxy answers such a client 502: net/http's server takes its end
// for its leaving before the answer comes.)
func TestAClientThatHalfClosesGetsAnAnswerWhoseBodyPauses(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 16<<10) // more than a writer buffers: the head leaves before the pause
	answers := map[string][2]string{
		"/sized":   {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nok:", "more"},
		"/chunked": {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok:\r\n", "4\r\nmore\r\n0\r\n\r\n"},
		"/big":     {fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\nok:%s", len(big)+7, big), "more"},
		"/interim": {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nok:more"},
	}
	// The instance answers once the client's half-close was sent: a half-close is one the
	// client sends with its request, before any of its answer.
	halfClosed := make(chan struct{}, 1)
	instance := rawInstance(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			select {
			case <-halfClosed:
			case <-time.After(5 * time.Second):
				return
			}
			a := answers[req.URL.Path]
			if _, err := io.WriteString(c, a[0]); err != nil {
				return
			}
			time.Sleep(4 * slowAnswer) // the instance's pause in the body: the case under test
			if _, err := io.WriteString(c, a[1]); err != nil {
				return
			}
		}
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {response_header: 2s}")
	for _, path := range []string{"/sized", "/chunked", "/big", "/interim"} {
		for _, tc := range []struct{ name, addr, raw string }{
			{"on the lean path", c.west, "GET " + path + " HTTP/1.1\r\n" + host + "\r\n"},
			{"on the fast path", c.west, "GET " + path + " HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
			{"on the ReverseProxy path", c.west, "POST " + path + " HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		} {
			t.Run(path[1:]+" "+tc.name, func(t *testing.T) {
				conn, err := net.Dial("tcp", tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, _ = io.WriteString(conn, tc.raw)
				_ = conn.(*net.TCPConn).CloseWrite()
				halfClosed <- struct{}{}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				for err == nil && resp.StatusCode < 200 {
					resp, err = http.ReadResponse(br, nil) // past an interim answer
				}
				if err != nil {
					t.Fatalf("no answer to a client that half-closed: %v", err)
				}
				body, err := io.ReadAll(resp.Body)
				want := "ok:" + strings.Repeat(big, btoi(path == "/big")) + "more"
				if err != nil || string(body) != want {
					t.Errorf("a client that half-closed got %d and %d bytes of the body ending %q (%v), want all %d, ending %q",
						resp.StatusCode, len(body), body[max(0, len(body)-8):], err, len(want), "more")
				}
			})
		}
	}
}

// TestAnEdgeThatGivesUpOnItsPeerHasThePeerCancelItsRequest: the edge that gives up on a peer
// edge (its response_header ran out) closes its connection to the peer with a reset, so that the
// peer cancels its own request to its instance at once. Closed with a FIN, the peer took the end
// for its client's half-close (TestAClientThatHalfClosesAfterItsRequestGetsItsAnswer) and kept
// its request to the instance open until its own response_header ran out (15 s by default).
func TestAnEdgeThatGivesUpOnItsPeerHasThePeerCancelItsRequest(t *testing.T) {
	released := make(chan struct{}, 8)
	never := rawInstance(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // never answers; reads until the edge closes
		released <- struct{}{}
	})
	c := twoEdgesWith(t, []string{rawInstance(t, hung)}, []string{never}, "http", "", ", timeouts: {response_header: 500ms}")
	for _, tc := range []struct{ name, raw string }{
		{"on the lean path", "GET /p HTTP/1.1\r\n" + host + "\r\n"},
		{"on the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.west)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, tc.raw)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				t.Fatalf("answered %d, want a 5xx: no instance answers", resp.StatusCode)
			}
			select {
			case <-released:
			case <-time.After(3 * time.Second):
				t.Fatal("the peer edge still holds its request to the instance 3 s after the edge gave up on it")
			}
		})
	}
}

// TestAHalfClosedClientThatResetsDuringAPauseHasItsRequestCancelled: a client that half-closed
// after its request is served on (TestAClientThatHalfClosesGetsAnAnswerWhoseBodyPauses) until it
// resets its connection, as one that closed it fully does at the answer's first bytes. A reset
// that came while the answer's body paused, after the edge had looked at the client and found
// its half-close (a client further away than the pause's 50 ms), went unseen until the instance
// wrote again: a stream that pauses for long (server-sent events) held its request upstream up
// to response_body (60 s by default), for a client long gone.
func TestAHalfClosedClientThatResetsDuringAPauseHasItsRequestCancelled(t *testing.T) {
	released := make(chan struct{}, 8)
	instance := rawInstance(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_ = req.Body.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok:\r\n")
		_, _ = io.Copy(io.Discard, c) // the stream's next event is far off; until the edge closes
		released <- struct{}{}
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	for _, tc := range []struct{ name, raw string }{
		{"on the lean path", "GET /events HTTP/1.1\r\n" + host + "\r\n"},
		{"on the fast path", "GET /events HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := sendHalfClosed(t, c.west, tc.raw)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if got, err := io.ReadFull(resp.Body, make([]byte, 3)); err != nil {
				t.Fatalf("read %d bytes of the stream: %v", got, err)
			}
			time.Sleep(4 * slowAnswer) // the client's distance: its reset comes after the edge looked
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close()
			select {
			case <-released:
			case <-time.After(3 * time.Second):
				t.Fatal("the request is still open upstream 3 s after its client reset the connection")
			}
		})
	}
}

// sendHalfClosed dials addr, sends raw and half-closes the connection, as nc -N does; its reads
// end 5 s on, and it is closed with the test.
func sendHalfClosed(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, _ = io.WriteString(conn, raw)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return conn
}

// halfClosingClients has 200 clients, one after the other, each send raw to addr and half-close
// its connection, and returns how many of them did not read answers answers of 200.
func halfClosingClients(t *testing.T, addr, raw string, answers int) (failed int) {
	t.Helper()
	for range 200 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, raw)
		_ = conn.(*net.TCPConn).CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		for range answers {
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				failed++
				break
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		_ = conn.Close()
	}
	return failed
}

// TestEveryClientThatHalfClosesWithItsRequestGetsItsAnswerOnTheNetHTTPPaths: net/http starts
// its background read of the connection before it calls the edge's handler, which marked the
// request as awaiting its answer: a client whose FIN came with its request had the read find
// the end first, now and then (under load, under -race), and its request was cancelled as if it
// had left, with no answer. The edge now marks a request awaiting as soon as its last byte is
// read.
func TestEveryClientThatHalfClosesWithItsRequestGetsItsAnswerOnTheNetHTTPPaths(t *testing.T) {
	t.Parallel()
	instance := rawInstance(t, answerEach("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	for _, tc := range []struct{ name, raw string }{
		{"on the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
		{"on the ReverseProxy path", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		// net/http ends a trailer that does not end in CRLF CRLF once it sees one further on,
		// here in the blank lines after it: its body read whole, the request was answered 400.
		{"after blank lines that end a trailer ending in a bare LF", "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\n\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if failed := halfClosingClients(t, c.west, tc.raw, 1); failed > 0 {
				t.Errorf("%d of 200 clients that half-closed with their request got no answer", failed)
			}
		})
	}
}

// TestAnEdgeThatGivesUpOnItsPeerWithARequestBodyHasThePeerCancelIt: a request with a body goes
// through http.Transport, which closed the connection to a peer edge it gave up on with a FIN,
// which the peer took for its client's half-close: it kept its request to the instance open
// until its own response_header ran out (15 s by default). It is closed with a reset, as on the
// fast paths (TestAnEdgeThatGivesUpOnItsPeerHasThePeerCancelItsRequest).
func TestAnEdgeThatGivesUpOnItsPeerWithARequestBodyHasThePeerCancelIt(t *testing.T) {
	released := make(chan struct{}, 8)
	never := rawInstance(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // never answers; reads until the edge closes
		released <- struct{}{}
	})
	// The edge's own instance refuses, so that the request, sent nowhere, goes on to the peer.
	c := twoEdgesWith(t, []string{freeAddr(t, "127.0.0.1")}, []string{never}, "http", "", ", timeouts: {response_header: 500ms}")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /p HTTP/1.1\r\n"+host+"Content-Length: 2\r\n\r\nhi")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("answered %d, want a 5xx: no instance answers", resp.StatusCode)
	}
	select {
	case <-released:
	case <-time.After(3 * time.Second):
		t.Fatal("the peer edge still holds its request to the instance 3 s after the edge gave up on it")
	}
}

// TestEveryClientThatHalfClosesAfterPipelinedRequestsGetsEachAnswerOnTheNetHTTPPaths: a client
// that sends two requests at once and then half-closes reads both answers. The guard marked the
// second request awaiting as it read it, with the first, and the first answer's end cleared the
// mark: net/http's background read for the second request found the FIN before the handler
// marked it again, took it for the client's leaving and cancelled it, with no answer.
func TestEveryClientThatHalfClosesAfterPipelinedRequestsGetsEachAnswerOnTheNetHTTPPaths(t *testing.T) {
	t.Parallel()
	instance := rawInstance(t, answerEach("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	for _, tc := range []struct{ name, raw string }{
		{"on the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
		{"on the ReverseProxy path", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if failed := halfClosingClients(t, c.west, tc.raw+tc.raw, 2); failed > 0 {
				t.Errorf("%d of 200 clients that half-closed after two pipelined requests missed an answer", failed)
			}
		})
	}
}

// TestAClientThatHalfClosesAfterOptionsStarIsClosedAtOnce: net/http answers OPTIONS * itself,
// without the edge's handler; counted as a request awaiting its handler, it had the guard take
// the client's later FIN on the idle connection for a half-close, held until idle ran out.
func TestAClientThatHalfClosesAfterOptionsStarIsClosedAtOnce(t *testing.T) {
	instance := rawInstance(t, answerEach("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	conn, err := net.Dial("tcp", c.west)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "OPTIONS * HTTP/1.1\r\n"+host+"\r\nGET /p HTTP/1.1\r\n"+host+"Content-Length: 0\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the edge did not close the connection of a client that half-closed it: %v", err)
	}
}

// TestAClientThatHalfClosesAfterAnIncompleteRequestIsAnsweredAtOnce: a client sends what the
// guard reads as a whole request, though net/http reads further, and half-closes. The guard held
// the end back from every read, as from net/http's background read while a request is served:
// net/http waited for the rest until client_header (10 s) or client_body (60 s, the instance's
// connection held as long) ran out, where ReverseProxy answers at once. Each is answered 400 at
// once: net/http answers the request lines itself, and the edge a body net/http gave up on past
// its trailer, where it closed the connection with no answer, as if the client had left
// (ReverseProxy answers 502). It holds the end
// from reads of one byte only, the background read's; but net/http reads one byte of its own
// where it reads past what the guard took for a whole request with a single byte of room left:
// its look for the HTTP/2 preface (14 bytes) after a 13-byte request line it answers 400 itself
// (no second space), and its look for the end of a trailer that does not end in CRLF CRLF, when
// the trailer is 4,095 bytes, one short of its buffer.
func TestAClientThatHalfClosesAfterAnIncompleteRequestIsAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	instance := rawInstance(t, answerEach("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	chunked := "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"a short request line", " HTTP/1.1\r\n\r\n"},
		{"a short request line of bare LFs", " HTTP/1.1\n\n"},
		{"a trailer ending in a bare LF", chunked + "\n"},
		{"a 13-byte request line with no target", "G/ HTTP/1.1\n\n"},
		{"a 13-byte request line with one space", "/ HTTP/1.1\r\n\n"},
		{"a 4,095-byte trailer ending in a bare LF", chunked + "X: " + strings.Repeat("a", 4089) + "\r\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			conn := sendHalfClosed(t, c.west, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("no answer %s after the half-close: %v", took.Round(time.Millisecond), err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || took > 2*time.Second {
				t.Errorf("answered %d %s after the half-close, want 400 at once", resp.StatusCode, took.Round(time.Millisecond))
			}
		})
	}
}

// TestTheGuardCountsAsServedExactlyTheRequestLinesNetHTTPServes: the guard marks a request
// awaiting its answer, and holds a half-close from net/http's background read, for the
// request lines net/http hands to a handler; one it answers itself (400, 505) is not awaited.
func TestTheGuardCountsAsServedExactlyTheRequestLinesNetHTTPServes(t *testing.T) {
	for _, line := range []string{
		"GET / HTTP/1.1", "GET / HTTP/1.0", "GET / HTTP/1.2", "GET / HTTP/1.9", "FOO / HTTP/1.1",
		"GET http://shop.demo.test/ HTTP/1.1", "CONNECT shop.demo.test:443 HTTP/1.1", "OPTIONS * HTTP/1.1",
		" HTTP/1.1", "GET HTTP/1.1", "G/ HTTP/1.1", "/ HTTP/1.1", "GET  HTTP/1.1", "GET\t/\tHTTP/1.1",
		"GET /a b HTTP/1.0", "GET /", "GET / HTTP/2.0", "GET / HTTP/0.9", "GET / http/1.1", "GET / HTTP/1.1 ",
	} {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line + "\r\nHost: shop.demo.test\r\n\r\n")))
		// What net/http's server serves of what http.ReadRequest parses: HTTP/1.x only.
		served := err == nil && req.ProtoMajor == 1
		g := &guardedConn{Conn: &net.TCPConn{}, r: bufio.NewReader(strings.NewReader(line + "\r\nHost: shop.demo.test\r\n\r\n")), max: 64 << 10}
		_, _ = io.ReadAll(readerFunc(g.Read))
		if got := g.read.Load() > 0 || g.global; got != served {
			t.Errorf("%q: the guard counts it served: %v, net/http serves it: %v (%v)", line, got, served, err)
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestAClientThatHalfClosesAfterARequestAndARefusedOneGetsBothAnswers: a client pipelines a
// request and one the guard refuses (a folded field), then half-closes. net/http's background
// read while the first is served found the end in the refused state, where it was not held,
// and the first request was cancelled as if the client had left.
func TestAClientThatHalfClosesAfterARequestAndARefusedOneGetsBothAnswers(t *testing.T) {
	t.Parallel()
	instance := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		time.Sleep(300 * time.Millisecond) // the instance's slowness, not a wait for an event
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, _ = io.Copy(io.Discard, br)
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	for _, tc := range []struct{ name, raw string }{
		{"on the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
		{"on the ReverseProxy path", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := sendHalfClosed(t, c.west, tc.raw+"GET /q HTTP/1.1\r\n"+host+"X: a\r\n b\r\n\r\n")
			br := bufio.NewReader(conn)
			for _, want := range []int{200, 400} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer %d to a client that half-closed: %v", want, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("answered %d, want %d", resp.StatusCode, want)
				}
			}
		})
	}
}

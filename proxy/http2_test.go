package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A short answer (under the 4 KiB net/http's HTTP/2 server buffers) is written only when the
// handler returns; a client that grants no window must still see its stream reset after
// client_write, as every other write to it is bounded.
func TestAShortAnswerToAnHTTP2ClientThatGrantsNoWindowIsBoundedByClientWrite(t *testing.T) {
	e1 := backend(t, "e1")
	w1 := backend(t, "w1")
	c := twoEdgesWith(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 300ms}")
	_, fr, get := h2cClient(t, c.west, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndHeaders: true, EndStream: true})
	ended := make(chan string, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				ended <- "connection: " + err.Error()
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				ended <- "reset " + f.ErrCode.String()
				return
			case *http2.GoAwayFrame:
				ended <- "goaway"
				return
			case *http2.HeadersFrame:
				t.Logf("headers, end stream %v", f.StreamEnded())
			case *http2.DataFrame:
				t.Logf("data %d", len(f.Data()))
			}
		}
	}()
	select {
	case how := <-ended:
		t.Logf("stream ended: %s", how)
	case <-time.After(3 * time.Second):
		t.Fatal("the stream was still open 3s after a client that grants no window asked for a short answer, want it reset after client_write (300ms)")
	}
}

// A short answer to a client that takes it: no RST_STREAM may follow the stream's end.
func TestNoResetFollowsAShortAnswerAnHTTP2ClientTook(t *testing.T) {
	e1 := backend(t, "e1")
	w1 := backend(t, "w1")
	c := twoEdgesWith(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 100ms}")
	conn, fr, get := h2cClient(t, c.west)
	for id := uint32(1); id < 40; id += 2 {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: get, EndHeaders: true, EndStream: true})
	}
	_ = conn.SetReadDeadline(time.Now().Add(1 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			t.Fatalf("RST_STREAM %v on stream %d after its answer", rst.ErrCode, rst.Header().StreamID)
		}
	}
}

// An HTTP/2 client that takes the answer steadily in small windows, 256 bytes every 20ms (about
// 12 KiB/s), is never idle for client_write: each window it grants is used at once, though the
// 4 KiB the edge's server hands on at a time take it 16 windows, longer than client_write.
func TestASlowButProgressingHTTP2ClientIsNotResetByClientWrite(t *testing.T) {
	big := httptestServer(t, 1<<20)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{big}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 300ms}")
	conn, fr, get := h2cClient(t, c.west, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 256})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndHeaders: true, EndStream: true})
	got := 0
	end := time.Now().Add(3 * time.Second)
	_ = conn.SetReadDeadline(end)
	for time.Now().Before(end) {
		f, err := fr.ReadFrame()
		if err != nil {
			return // the read deadline: 3s with no reset
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset (%v) after %d bytes taken steadily, want it kept while the client takes the answer", f.ErrCode, got)
		case *http2.DataFrame:
			n := len(f.Data())
			got += n
			if n > 0 {
				time.Sleep(20 * time.Millisecond) // the client's pace, not synchronisation
				_ = fr.WriteWindowUpdate(1, uint32(n))
				_ = fr.WriteWindowUpdate(0, uint32(n))
			}
			if f.StreamEnded() {
				return
			}
		}
	}
}

func httptestServer(t *testing.T, size int) string {
	t.Helper()
	body := bytes.Repeat([]byte("x"), size)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// h2cClient opens an HTTP/2 connection without TLS to addr with settings, and returns it, its
// framer and the header block of a GET / of shop.
func h2cClient(t *testing.T, addr string, settings ...http2.Setting) (net.Conn, *http2.Framer, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	_ = fr.WriteSettings(settings...)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return conn, fr, hb.Bytes()
}

// dataBytes marks, for each byte of b, a stream of HTTP/2 frames read whole, whether it is a
// DATA frame's payload.
func dataBytes(b []byte) []bool {
	out := make([]bool, len(b))
	for i := 0; i+9 <= len(b); {
		n := int(b[i])<<16 | int(b[i+1])<<8 | int(b[i+2])
		data := b[i+3] == 0
		i += 9
		for k := 0; k < n && i < len(b); k++ {
			out[i] = data
			i++
		}
	}
	return out
}

// FuzzFrameWatch feeds a stream of HTTP/2 frames to frameWatch in pieces cut where cuts says,
// and fails when a piece's report differs from whether the piece holds a DATA frame's payload
// byte, as reading the stream whole finds it.
func FuzzFrameWatch(f *testing.F) {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 256})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	_ = fr.WriteData(1, false, bytes.Repeat([]byte("x"), 300))
	_ = fr.WriteData(3, false, nil)
	_ = fr.WritePing(true, [8]byte{1})
	_ = fr.WriteData(1, true, []byte("end"))
	f.Add(b.Bytes(), []byte{1, 9, 10, 200, 3})
	f.Add(b.Bytes(), []byte{})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		want := dataBytes(stream)
		var w frameWatch
		rest := stream
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			at := len(stream) - len(rest)
			if got := w.feed(rest[:n]); got != slices.Contains(want[at:at+n], true) {
				t.Fatalf("the piece of %d bytes at %d: feed reports DATA bytes %v, reading the stream whole finds %v", n, at, got, !got)
			}
			rest = rest[n:]
		}
	})
}

// A client may not keep one stream's answer waiting for window for ever by taking another
// stream's answer a few bytes at a time on the same connection: the waiting stream is reset
// after client_write, which frees its connection upstream, as it would be with no other
// stream open.
func TestAnHTTP2StreamGrantedNoWindowIsResetThoughAnotherStreamOfItsConnectionProgresses(t *testing.T) {
	big := httptestServer(t, 1<<20)
	e1 := backend(t, "e1")
	c := twoEdgesWith(t, []string{big}, []string{e1.Listener.Addr().String()}, "http", "",
		", timeouts: {client_write: 300ms}")
	conn, fr, get := h2cClient(t, c.west, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndHeaders: true, EndStream: true})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: get, EndHeaders: true, EndStream: true})
	_ = fr.WriteWindowUpdate(3, 256) // stream 1 is granted nothing, ever
	taken := 0
	end := time.Now().Add(3 * time.Second)
	_ = conn.SetReadDeadline(end)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream 1 was still open 3s after it asked, while stream 3 took %d bytes in 256-byte windows, want it reset after client_write (300ms)", taken)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				t.Logf("stream 1 reset (%v) while stream 3 had taken %d bytes", f.ErrCode, taken)
				return
			}
		case *http2.DataFrame:
			if n := len(f.Data()); f.StreamID == 3 && n > 0 {
				taken += n
				time.Sleep(20 * time.Millisecond) // the client's pace, not synchronisation
				_ = fr.WriteWindowUpdate(3, uint32(n))
				_ = fr.WriteWindowUpdate(0, uint32(n))
			}
		}
	}
}

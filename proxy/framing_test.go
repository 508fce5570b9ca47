package proxy

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// The guard passes a chunked body on as it came, whatever the chunk sizes: the largest ones
// net/http reads included, whose length with its CRLF does not fit an int64.
func TestTheGuardPassesChunksOfEverySizeNetHTTPReads(t *testing.T) {
	head := "POST /c HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, size := range []string{"5", "5;ext=1", "A", "7ffffffffffffffd", "7ffffffffffffffe", "7fffffffffffffff", "ffffffffffffffff"} {
		raw := head + size + "\r\nhello\r\n0\r\n\r\n"
		g := &guardedConn{r: bufio.NewReader(strings.NewReader(raw)), max: 64 << 10}
		got, err := func() (got []byte, err error) {
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("chunk size %s: the guard panicked: %v", size, v)
				}
			}()
			return io.ReadAll(g)
		}()
		if err != nil || string(got) != raw {
			t.Errorf("chunk size %s: the guard passed on %q (%v), want %q", size, got, err, raw)
		}
	}
}

// pieces reads from s at most n bytes at a time.
type pieces struct {
	s string
	n int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.s) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), p.n)], p.s)
	p.s = p.s[k:]
	return k, nil
}

// passedOn returns what g passes on to net/http until its stream ends, or until it waits for
// the answer to an Upgrade request, where its read returns nothing (see guardedConn.Read).
func passedOn(g *guardedConn) string {
	var out []byte
	p := make([]byte, 512)
	for {
		n, err := g.Read(p)
		out = append(out, p[:n]...)
		if err != nil || n == 0 {
			return string(out)
		}
	}
}

// FuzzGuard checks that the guard never panics, passes on what a client sent unchanged but for
// a refused, unsupported (a PRI * HTTP/2.0 that is no preface opening the connection) or too
// long head, whose replacement ends what it passes on, and does so however the bytes are split
// across reads.
func FuzzGuard(f *testing.F) {
	for _, tc := range corpus {
		f.Add(tc.raw, uint8(7))
	}
	f.Add("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nhello", uint8(3))
	f.Fuzz(func(t *testing.T, raw string, split uint8) {
		guard := func(n int) *guardedConn {
			return &guardedConn{r: bufio.NewReaderSize(&pieces{s: raw, n: n}, 16), max: 1 << 10}
		}
		read := func(n int) string {
			return passedOn(guard(n))
		}
		whole := read(len(raw) + 1)
		kept, ok := strings.CutSuffix(whole, refusedHead)
		if !ok {
			kept, ok = strings.CutSuffix(whole, unsupportedHead)
		}
		if !ok {
			kept, ok = strings.CutSuffix(whole, string(guard(1).tooLong()))
		}
		if !strings.HasPrefix(raw, whole) && (!ok || !strings.HasPrefix(raw, kept)) {
			t.Fatalf("the guard passed on %.200q for %.200q", whole, raw)
		}
		n := int(split)%64 + 1
		if got := read(n); got != whole {
			t.Fatalf("read in pieces of %d, the guard passed on %.200q for %.200q; read whole, %.200q", n, got, raw, whole)
		}
	})
}

// flood reads as a client that sends without end: n bytes, then an error, counting them.
type flood struct{ n, read int }

func (e *flood) Read(p []byte) (int, error) {
	if e.read >= e.n {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), e.n-e.read)
	clear(p[:k])
	e.read += k
	return k, nil
}

// While an Upgrade request awaits its answer, the guard holds back what the client sends after
// it, but no more than one read of it: net/http's background read, which watches for the
// client's leaving, stops at the first byte too, leaving the rest to the socket's flow control.
// Held without bound, a client could have the edge buffer all it sends until the answer comes,
// up to response_header later.
func TestTheGuardHoldsBackLittleOfWhatFollowsAnUpgradeBeforeItsAnswer(t *testing.T) {
	const head = "GET /socket HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	client := &flood{n: 64 << 20}
	g := &guardedConn{r: bufio.NewReader(io.MultiReader(strings.NewReader(head), client)), max: 64 << 10}
	got := make([]byte, len(head))
	if _, err := io.ReadFull(g, got); err != nil || string(got) != head {
		t.Fatalf("the guard passed on %q (%v), want the Upgrade request", got, err)
	}
	// net/http's background read, while the request is served.
	if n, err := g.Read(make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("the read after an Upgrade request, before its answer, returned %d, %v; want 0, nil", n, err)
	}
	if client.read > len(g.buf) {
		t.Errorf("the guard read %d bytes the client sent after an Upgrade request before its answer, want at most %d", client.read, len(g.buf))
	}
	// The answer switched protocols (as Write notes it): every byte the client sent follows.
	g.switching.Store(switchDone)
	n, err := io.Copy(io.Discard, g)
	if n != int64(client.n) || err != io.ErrUnexpectedEOF {
		t.Errorf("after the switch the guard passed on %d bytes (%v), want all %d the client sent", n, err, client.n)
	}
}

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

// FuzzGuard checks that the guard never panics, passes on what a client sent unchanged but for
// a refused or too long head, whose replacement ends what it passes on, and does so however the
// bytes are split across reads.
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
			got, _ := io.ReadAll(guard(n))
			return string(got)
		}
		whole := read(len(raw) + 1)
		kept, ok := strings.CutSuffix(whole, refusedHead)
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

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

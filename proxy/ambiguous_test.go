package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func TestFramingWatchFindsBothFramingsInTheAnswersHeadsOnly(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		want         bool
	}{
		{"a length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"both", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"both, in another case, with bare LFs", "HTTP/1.1 200 OK\ncontent-length: 2\nTRANSFER-ENCODING: chunked\n\n0\n\n", true},
		{"both in an interim answer, which has no body", "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nTransfer-Encoding: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", false},
		{"both in the final answer after an interim one", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"one in an interim answer, the other in the final one", "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"both in the body", "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"both after a switch", "HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"a field whose name starts with one", "HTTP/1.1 200 OK\r\nContent-Length-X: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for step := 1; step <= len(tc.stream); step++ { // however the bytes arrive
				var w framingWatch
				w.expect()
				for b := []byte(tc.stream); len(b) > 0; b = b[min(step, len(b)):] {
					w.feed(b[:min(step, len(b))])
				}
				if w.ambiguous != tc.want {
					t.Fatalf("fed %d bytes at a time: ambiguous %v, want %v", step, w.ambiguous, tc.want)
				}
			}
		})
	}
}

// FuzzFramingWatch holds framingWatch to net/textproto, which net/http reads heads with: of the
// heads textproto reads up to the final answer's, framingWatch calls ambiguous exactly those
// with both Transfer-Encoding and Content-Length.
func FuzzFramingWatch(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 3)
	f.Add("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1)
	f.Add("HTTP/1.1 101 Switching\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 7)
	f.Fuzz(func(t *testing.T, stream string, step int) {
		step = max(1, step%64+1)
		var w framingWatch
		w.expect()
		for b := []byte(stream); len(b) > 0; b = b[min(step, len(b)):] {
			w.feed(b[:min(step, len(b))])
		}
		want := false
		tp := textproto.NewReader(bufio.NewReader(strings.NewReader(stream)))
		for {
			line, err := tp.ReadLine()
			if err != nil || len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' {
				return // not a head net/http reads: framingWatch's verdict does not matter
			}
			h, err := tp.ReadMIMEHeader()
			if err != nil {
				return
			}
			if line[9] != '1' || line[9:12] == "101" {
				// Only the final head frames a body.
				_, length := h["Content-Length"]
				_, chunked := h["Transfer-Encoding"]
				want = length && chunked
				break
			}
		}
		if w.ambiguous != want {
			t.Fatalf("%q fed %d bytes at a time: ambiguous %v, want %v", stream, step, w.ambiguous, want)
		}
	})
}

// The transport's connections are watched, not hidden: a client that half-closes an upgraded
// connection half-closes the instance's, which can still answer.
func TestAnUpgradedConnectionsHalfClosePassesThrough(t *testing.T) {
	w1 := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
		got, _ := io.ReadAll(br) // until the client's half-close
		_, _ = io.WriteString(c, "got "+string(got))
	})
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{w1}, []string{e1.Listener.Addr().String()}, "http", "")
	conn := sendRaw(t, c.west, "GET /socket HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the upgrade was answered %v, %v; want 101", resp, err)
	}
	_, _ = io.WriteString(conn, "hello")
	_ = conn.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(br); string(got) != "got hello" {
		t.Errorf("after the client's half-close, it read %q, want %q", got, "got hello")
	}
}

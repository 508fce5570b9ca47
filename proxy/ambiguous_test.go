package proxy

import (
	"bufio"
	"fmt"
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

// An instance that switches protocols (101) where no upgrade was forwarded to it (a request
// with a body, whose upgrade the edge drops; a request without one) or to another protocol
// than the one forwarded is answered 502 on every path, and its connection is closed: what
// follows the 101 is no answer, and the connection can carry no other request. On the
// ReverseProxy path it was left open (httputil.ReverseProxy answers such a switch with its
// error handler and never closes the answer's body, which owns the connection), until the
// instance closed it.
func TestAnInstanceThatSwitchesProtocolsUnaskedIsAnswered502AndItsConnectionClosed(t *testing.T) {
	ended := make(chan string, 8)
	instance := rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		upgrade := ""
		if req.URL.Path != "/bare" {
			upgrade = "Upgrade: foo\r\nConnection: Upgrade\r\n"
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\n"+upgrade+"\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, br)
		if closedByPeer(err) {
			err = nil // closed, with a reset: the edge gives up on the connection
		}
		ended <- fmt.Sprintf("%s %v", req.URL.Path, err)
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", "")
	for _, tc := range []struct{ name, raw string }{
		{"a body and an upgrade the edge dropped", "POST /p HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: foo\r\nContent-Length: 2\r\n\r\nhi"},
		{"a body and no upgrade", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		{"a body and no upgrade, switched without an Upgrade field", "POST /bare HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		{"an upgrade to another protocol", "GET /p HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: bar\r\n\r\n"},
		{"the lean path", "GET /p HTTP/1.1\r\n" + host + "\r\n"},
		{"the fast path", "GET /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := sendRaw(t, c.west, tc.raw)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("answered %d, want 502", resp.StatusCode)
			}
			select {
			case got := <-ended:
				if !strings.HasSuffix(got, " <nil>") {
					t.Errorf("the instance's connection was not closed after its 101: %s", got)
				}
			case <-time.After(8 * time.Second):
				t.Fatal("the instance never saw its connection end")
			}
		})
	}
}

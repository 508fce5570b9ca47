package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// dialAs connects to addr from the loopback address from, as a distinct client, and returns
// the connection, or nil when it was reset before the dial returned (refused at once).
func dialAs(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if isReset(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// closedUnanswered reports why c was not closed by the edge with nothing written to it, or ""
// when it was.
func closedUnanswered(c net.Conn) string {
	if c == nil {
		return ""
	}
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		return "it was answered"
	case err == nil || isTimeout(err):
		return fmt.Sprintf("it was still open (%v)", err)
	}
	return ""
}

// The ways a client speaks to an HTTP listener: each sends one request on c and reports
// whether it was answered 200, leaving c open.
var httpClients = []struct {
	name string
	ask  func(c net.Conn) bool
}{
	{"HTTP/1.1 GET (the front)", func(c net.Conn) bool {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
		return answered200(c, "GET")
	}},
	{"HTTP/1.1 POST (net/http)", func(c net.Conn) bool {
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 1\r\n\r\nx")
		return answered200(c, "POST")
	}},
	{"HTTP/2 with prior knowledge", func(c net.Conn) bool {
		_, _ = io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		_ = fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return false
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
				return h.PseudoValue("status") == "200"
			}
		}
	}},
}

// serves reports whether c is open and ask has it answered.
func serves(ask func(net.Conn) bool, c net.Conn) bool { return c != nil && ask(c) }

func answered200(c net.Conn, method string) bool {
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// refusals counts the lines edge-west logged for connections over a limit of client's.
func refusals(c *cluster, client string) int {
	n := 0
	for _, l := range strings.Split(c.logs.String(), "\n") {
		if strings.Contains(l, `"edge":"edge-west"`) && strings.Contains(l, "connection refused: over a connection limit") &&
			strings.Contains(l, `"client":"`+client+`"`) {
			n++
		}
	}
	return n
}

// A client holding max_conns_per_client connections to an HTTP listener, whatever it speaks,
// has its next ones closed as soon as they are accepted, with nothing written: one client must
// not take the descriptors every other client and app of the edge needs. Another client is
// served meanwhile; the limit is counted, logged once, and a connection closed frees its slot.
func TestAnHTTPClientOverMaxConnsPerClientIsClosedAtAccept(t *testing.T) {
	for _, hc := range httpClients {
		t.Run(hc.name, func(t *testing.T) {
			w1, e1 := backend(t, "w1"), backend(t, "e1")
			c := twoEdgesWith(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "",
				", max_conns_per_client: 2")
			held := []net.Conn{dialAs(t, "127.0.0.5", c.west), dialAs(t, "127.0.0.5", c.west)}
			for i, h := range held {
				if !serves(hc.ask, h) {
					t.Fatalf("connection %d of 2 from 127.0.0.5 was not answered 200, want it served", i+1)
				}
			}
			const over = 5
			for i := range over {
				extra := dialAs(t, "127.0.0.5", c.west)
				if why := closedUnanswered(extra); why != "" {
					t.Fatalf("connection %d of 127.0.0.5 (max_conns_per_client 2): %s, want it closed at once with nothing written", 3+i, why)
				}
			}
			if !serves(hc.ask, dialAs(t, "127.0.0.6", c.west)) {
				t.Fatal("127.0.0.6 was not served while 127.0.0.5 was at its limit, want each client limited alone")
			}
			// A refusal is counted and logged just after the connection is closed.
			m := c.metrics.EdgeConnectionsRefused.WithLabelValues("edge-west", "shop", "max_conns_per_client")
			eventstest.Eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(m) == over && refusals(c, "127.0.0.5") > 0 },
				"detour_edge_connections_refused_total{reason=max_conns_per_client} to count the %d refused, and a line logged", over)
			if n := refusals(c, "127.0.0.5"); n != 1 {
				t.Errorf("%d connections over the limit logged %d lines, want 1 per client a while", over, n)
			}
			_ = held[0].Close()
			eventstest.Eventually(t, 5*time.Second, func() bool { return serves(hc.ask, dialAs(t, "127.0.0.5", c.west)) },
				"a connection from 127.0.0.5 served once one of its two closed")
		})
	}
}

// echoedByW1 reports whether a line sent on c came back from echoServer w1.
func echoedByW1(c net.Conn) bool {
	_, _ = io.WriteString(c, "hi\n")
	got, _ := bufio.NewReader(c).ReadString('\n')
	return got == "w1 hi\n"
}

// A TCP listener closes a connection over max_conns_per_client at once, before it dials any
// instance, and serves the client again once one of its connections closed.
func TestATCPClientOverMaxConnsPerClientIsClosedAtAccept(t *testing.T) {
	w1, e1 := echoServer(t, "w1"), echoServer(t, "e1")
	c := twoEdgesWith(t, []string{w1.Addr().String()}, []string{e1.Addr().String()}, "tcp", "", ", max_conns_per_client: 2")
	held := []net.Conn{dialAs(t, "127.0.0.5", c.west), dialAs(t, "127.0.0.5", c.west)}
	for i, h := range held {
		if !serves(echoedByW1, h) {
			t.Fatalf("connection %d of 2 from 127.0.0.5 was not relayed, want it served", i+1)
		}
	}
	if why := closedUnanswered(dialAs(t, "127.0.0.5", c.west)); why != "" {
		t.Fatalf("a third connection of 127.0.0.5 (max_conns_per_client 2): %s, want it closed at once", why)
	}
	if !serves(echoedByW1, dialAs(t, "127.0.0.6", c.west)) {
		t.Fatal("127.0.0.6 was not served while 127.0.0.5 was at its limit")
	}
	m := c.metrics.EdgeConnectionsRefused.WithLabelValues("edge-west", "shop", "max_conns_per_client")
	eventstest.Eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(m) == 1 },
		"detour_edge_connections_refused_total{reason=max_conns_per_client} to count the one refused")
	_ = held[0].Close()
	eventstest.Eventually(t, 5*time.Second, func() bool { return serves(echoedByW1, dialAs(t, "127.0.0.5", c.west)) },
		"a connection from 127.0.0.5 served once one of its two closed")
}

// A listener holding max_conns connections accepts no more: the next one, whichever client
// opens it, waits in the kernel's backlog, neither reset nor read, and is served once one of
// those held closes, so that a burst at the limit (a prober's check among it) is served late
// rather than reset. (East's pings of west may hold one of the places a while.)
func TestAListenerAtMaxConnsAcceptsNoMoreUntilAConnectionCloses(t *testing.T) {
	for _, mode := range []string{"http", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			var c *cluster
			var served func(net.Conn) bool
			if mode == "tcp" {
				w1, e1 := echoServer(t, "w1"), echoServer(t, "e1")
				c = twoEdgesWith(t, []string{w1.Addr().String()}, []string{e1.Addr().String()}, mode, "", ", max_conns: 3")
				served = echoedByW1
			} else {
				w1, e1 := backend(t, "w1"), backend(t, "e1")
				c = twoEdgesWith(t, []string{w1.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, mode, "", ", max_conns: 3")
				served = httpClients[0].ask
			}
			// Four clients ask at once; those the listener took are answered, the others wait.
			conns := make([]net.Conn, 4)
			ok := make([]bool, 4)
			var wg sync.WaitGroup
			for i := range conns {
				conns[i] = dialAs(t, fmt.Sprintf("127.0.0.%d", 5+i), c.west)
				if conns[i] == nil {
					t.Fatalf("connection %d of 4 was reset, want it served or waiting (max_conns 3)", i+1)
				}
				_ = conns[i].SetDeadline(time.Now().Add(2 * time.Second))
				wg.Go(func() { ok[i] = served(conns[i]) })
			}
			wg.Wait()
			var held, waiting []net.Conn
			for i, conn := range conns {
				if ok[i] {
					held = append(held, conn)
				} else {
					waiting = append(waiting, conn)
				}
			}
			if len(held) == 0 || len(held) > 3 {
				t.Fatalf("%d of 4 connections from 4 clients served at once, want 1 to 3 (max_conns 3)", len(held))
			}
			if !strings.Contains(c.logs.String(), "accepting paused: max_conns connections open") {
				t.Error("no line logged for the listener that paused")
			}
			_ = held[0].Close()
			// The requests sent already are answered once their connection is taken.
			later := make([]bool, len(waiting))
			for i, conn := range waiting {
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				wg.Go(func() {
					if mode == "tcp" {
						got, _ := bufio.NewReader(conn).ReadString('\n')
						later[i] = got == "w1 hi\n"
					} else {
						later[i] = answered200(conn, "GET")
					}
				})
			}
			wg.Wait()
			if !slices.Contains(later, true) {
				t.Fatal("no connection waiting was served once one of those held closed")
			}
			if n := testutil.ToFloat64(c.metrics.EdgeConnectionsRefused.WithLabelValues("edge-west", "shop", "max_conns_per_client")); n != 0 {
				t.Errorf("detour_edge_connections_refused_total %v, want none refused", n)
			}
		})
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
)

// proberPing is the request a prober checks an HTTP edge listener with (Go's client, keep-alives
// off): HEAD / with Detour-Edge-Ping, on a connection of its own.
func proberPing(addr string) string {
	return "HEAD / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\nDetour-Edge-Ping: prober\r\n\r\n"
}

// rawAnswer sends raw on a new connection to addr and returns every byte the edge sends back
// until it closes the connection or a second passes, with the Date field's value masked.
func rawAnswer(t *testing.T, addr, raw string) string {
	t.Helper()
	b, _ := io.ReadAll(sendRaw(t, addr, raw))
	return string(dateField.ReplaceAll(b, []byte("Date: (masked)\r\n")))
}

var dateField = regexp.MustCompile(`Date: [^\r]*\r\n`)

// TestAPingIsAnsweredByTheFrontExactlyAsNetHTTPAnswersIt sends each ping twice: as it comes from
// a prober or a peer edge, which the front answers itself, and with "Content-Length: 0", which
// leaves it to net/http. The bytes of both answers must be the same (the Date's value aside),
// and so must whether the edge closes the connection after them.
func TestAPingIsAnsweredByTheFrontExactlyAsNetHTTPAnswersIt(t *testing.T) {
	e0, e1 := backend(t, "e0"), backend(t, "e1")
	c := twoEdges(t, []string{e0.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	for _, head := range []string{
		"HEAD / HTTP/1.1\r\nHost: " + c.west + "\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\nDetour-Edge-Ping: prober\r\n",
		"GET / HTTP/1.1\r\nHost: shop\r\nDetour-Edge-Ping: edge-east\r\n",
		"HEAD /any/path?q=1 HTTP/1.1\r\nHost: shop\r\nDetour-Edge-Ping: 1\r\nDetour-Edge-Ping: 2\r\nConnection: keep-alive, close\r\n",
		"GET / HTTP/1.1\r\ndetour-edge-ping: x\r\nHost: shop\r\nTE: trailers\r\n",
	} {
		// Connection: close, or the end of the second, ends each exchange; a second request on
		// the same connection shows that the connection stays open when it should.
		lean := rawAnswer(t, c.west, head+"\r\n")
		viaNetHTTP := rawAnswer(t, c.west, head+"Content-Length: 0\r\n\r\n")
		if lean != viaNetHTTP || !bytes.HasPrefix([]byte(lean), []byte("HTTP/1.1 204 No Content\r\n")) {
			t.Errorf("%q:\nfront:    %q\nnet/http: %q", head, lean, viaNetHTTP)
		}
	}
}

// TestAPingWithAnEmptyValueIsARequest: net/http's handler takes a ping field without a value for
// no ping at all, so the request is proxied.
func TestAPingWithAnEmptyValueIsARequest(t *testing.T) {
	e0, e1 := backend(t, "e0"), backend(t, "e1")
	c := twoEdges(t, []string{e0.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	resp, body := exchangeRaw(t, c.west, "GET / HTTP/1.1\r\nHost: shop\r\nDetour-Edge-Ping:\r\n\r\n")
	if resp.StatusCode != 200 || body != "e0 GET " {
		t.Errorf("answer %d %q, want 200 %q", resp.StatusCode, body, "e0 GET ")
	}
}

// BenchmarkProberPing is one prober check of an HTTP edge listener: a new connection, the ping,
// its 204, the close. cpu-µs/op is the process's CPU (user and system, the client's side
// included) per check, which a loaded machine's wall-clock time does not show.
func BenchmarkProberPing(b *testing.B) {
	e0, e1 := backend(b, "e0"), backend(b, "e1")
	c := twoEdges(b, []string{e0.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	req := []byte(proberPing(c.west))
	head := &http.Request{Method: http.MethodHead}
	b.ReportAllocs()
	cpu0 := eventstest.ProcessCPU(b)
	for b.Loop() {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), head)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			b.Fatalf("ping answered %v, %v", resp, err)
		}
		_ = conn.Close()
	}
	b.ReportMetric(float64((eventstest.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

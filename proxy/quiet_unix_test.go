//go:build unix

package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// parkedWatches returns the first lines ("goroutine 7 [IO wait]:") of the goroutines waiting in
// resetWhileHalfClosed.
func parkedWatches() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var heads []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "proxy.resetWhileHalfClosed(") {
			heads = append(heads, strings.SplitN(g, "\n", 2)[0])
		}
	}
	return heads
}

// TestAHalfClosedClientAwaitingItsAnswerIsParkedWithNoTimer: a client that half-closed its
// connection while its answer is slow is watched for a reset in the poller, on the lean path and
// on the net/http one, not looked at every 500 ms: 5,000 such clients cost 7% of a core then.
func TestAHalfClosedClientAwaitingItsAnswerIsParkedWithNoTimer(t *testing.T) {
	if levelTriggered() {
		t.Skip("a level-triggered poller: the watch looks every resetLook (quiet_ticker.go)")
	}
	instance := rawInstance(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // no answer until the edge closes
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {response_header: 30s}")
	for i, raw := range []string{
		"GET / HTTP/1.1\r\n" + host + "\r\n",
		"GET / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, raw)
		_ = conn.(*net.TCPConn).CloseWrite()
		// A watch is runnable a moment when it starts and when the client's end wakes it; one
		// that looks on a timer waits in a select, never in the poller.
		heads := parkedWatches()
		for deadline := time.Now().Add(5 * time.Second); len(heads) <= i || !allParked(heads); heads = parkedWatches() {
			if time.Now().After(deadline) {
				t.Fatalf("%q: the half-closed clients' watches after 5 s are %q, want %d parked in the poller (IO wait)", raw, heads, i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// allParked reports whether every watch of heads (parkedWatches) waits in the poller.
func allParked(heads []string) bool {
	for _, h := range heads {
		if !strings.Contains(h, "[IO wait") {
			return false
		}
	}
	return true
}

// TestAHalfClosedClientAwaitingItsAnswerHasItsRequestCancelledWhenTheEdgeStops: an edge that
// stops closes, after its grace, the connections of the clients still awaiting an answer, and
// their requests upstream are cancelled. The watch parked for a half-closed client's reset took
// its connection's closing for the end of the watch, as a deadline ends it: the request stayed
// open upstream, on the lean path and on the net/http one, until the instance answered or
// response_header ran out, after the edge, or the app it no longer fronts, had stopped.
func TestAHalfClosedClientAwaitingItsAnswerHasItsRequestCancelledWhenTheEdgeStops(t *testing.T) {
	released := make(chan struct{}, 8)
	instance := rawInstance(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // no answer until the edge closes
		released <- struct{}{}
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {response_header: 60s}")
	raws := []string{
		"GET / HTTP/1.1\r\n" + host + "\r\n",                      // the lean path
		"GET / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", // net/http's
	}
	for _, raw := range raws {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, raw)
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	for deadline := time.Now().Add(5 * time.Second); len(parkedWatches()) < len(raws); {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches for a half-closed client's reset after 5 s, want %d", len(parkedWatches()), len(raws))
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.stop("edge-west")
	timeout := time.After(3 * time.Second) // the edge has stopped, after its grace
	for i := range raws {
		select {
		case <-released:
		case <-timeout:
			t.Fatalf("%d of %d requests of half-closed clients still open upstream 3 s after the edge stopped", len(raws)-i, len(raws))
		}
	}
}

// levelTriggered reports whether this system's poller is level-triggered (quiet_ticker.go).
func levelTriggered() bool {
	return runtime.GOOS == "solaris" || runtime.GOOS == "illumos" || runtime.GOOS == "aix"
}

// cpuTime returns the CPU time the test process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAHalfClosedClientAwaitingItsAnswerCostsNoCore: a socket at its end is always ready to
// read, and a level-triggered poller (illumos's and Solaris's event ports, AIX's poll) hands a
// wait for it back at once: the watch parked for a half-closed client's reset looked, found the
// end, and waited again, a core's worth for each such client, for as long as its answer took.
// Those systems look every resetLook instead; 100 parked clients cost a few ms a second here.
func TestAHalfClosedClientAwaitingItsAnswerCostsNoCore(t *testing.T) {
	instance := rawInstance(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // no answer until the edge closes
	})
	c := twoEdgesWith(t, []string{instance}, []string{instance}, "http", "", ", timeouts: {response_header: 30s}")
	const clients = 100
	for i := range clients {
		conn, err := net.Dial("tcp", c.west)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\n"+host+strings.Repeat("Content-Length: 0\r\n", i%2)+"\r\n")
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	for deadline := time.Now().Add(10 * time.Second); parkedCount() < clients; {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches for a half-closed client's reset after 10 s, want %d", parkedCount(), clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
	const window = time.Second
	used := cpuTime(t)
	time.Sleep(window) // the time measured, not a wait for an event
	if used = cpuTime(t) - used; used > window/2 {
		t.Errorf("%d half-closed clients awaiting their answer cost %v of CPU in %v, want under half a core", clients, used, window)
	}
}

// parkedCount counts the goroutines in resetWhileHalfClosed, however many there are.
func parkedCount() int {
	buf := make([]byte, 16<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "proxy.resetWhileHalfClosed(")
}

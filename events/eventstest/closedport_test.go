//go:build unix

package eventstest_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// TestAClosedPortStaysClosedWhileTheTestRuns: a connection to the port is refused, and neither a
// listener nor a client of this or another process (which all bind their port as these do)
// is handed the port while the test runs: one handed it would answer where the test expects a
// refusal (a prober's check of a closed port then timed out against a later test server's
// port, or read its answer).
func TestAClosedPortStaysClosedWhileTheTestRuns(t *testing.T) {
	addr := eventstest.ClosedPort(t)
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener took %s, the closed port", addr)
	}
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("a connection to %s, the closed port, was accepted", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to %s: %v, want it refused", addr, err)
		}
	}
}

// TestARefusedUDPPortStaysRefusedWhileTheTestRuns: a datagram to the port is refused, and no
// other socket (a DNS server of a test on port 0, or on that port) is handed the port while the
// test runs.
func TestARefusedUDPPortStaysRefusedWhileTheTestRuns(t *testing.T) {
	addr := eventstest.RefusedUDP(t)
	if c, err := net.ListenPacket("udp", addr); err == nil {
		c.Close()
		t.Fatalf("another socket took %s, the refused port", addr)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// The refusal of the first datagram ends the read (or the second write) on a connected socket.
	_, err = c.Write([]byte("query"))
	if err == nil {
		_, err = c.Read(make([]byte, 16))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a datagram to %s: %v, want it refused", addr, err)
	}
}

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

//go:build !unix

package eventstest

import (
	"net"
	"testing"
)

// ClosedPort returns a loopback address nothing listens on: a listener's, closed again, so that
// the next listener on port 0, of this test or another process, may be handed it (on unix
// kernels a socket bound to it keeps it closed).
func ClosedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

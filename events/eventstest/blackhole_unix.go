//go:build unix

package eventstest

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// Blackhole returns a loopback address whose connections are never answered, as a dead host's or
// a dropped route's are: a listener with room for one pending connection that never accepts,
// that room taken, so the kernel drops every further SYN. Nothing leaves loopback.
func Blackhole(t testing.TB) string {
	t.Helper()
	fd, addr := boundSocket(t)
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatalf("fill the backlog of %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatalf("%s still accepted connections after 8: its backlog never filled", addr)
	return ""
}

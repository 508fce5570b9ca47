//go:build unix

package eventstest

import (
	"errors"
	"fmt"
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
	// Made close-on-exec under ForkLock, as net does where socket(2) takes no SOCK_CLOEXEC (darwin).
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
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

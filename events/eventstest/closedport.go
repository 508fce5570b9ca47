//go:build unix

package eventstest

import (
	"fmt"
	"syscall"
	"testing"
)

// ClosedPort returns a loopback address whose connections are refused for as long as the test
// runs: a socket bound to it that never listens, so that the kernel answers a SYN with a reset
// and hands the port to no other socket, neither a listener's port 0 (Go's set SO_REUSEADDR,
// which a port bound without it refuses) nor a client's. A listener opened and closed again, as
// this was, left its port free for the next listener on port 0, of this test or another
// process: a check of the "closed" port then timed out against a test server that never
// answers, or read its answer.
func ClosedPort(t testing.TB) string {
	t.Helper()
	_, addr := boundSocket(t)
	return addr
}

// boundSocket returns a TCP socket bound to a free port of 127.0.0.1, closed when the test ends,
// and its address.
func boundSocket(t testing.TB) (fd int, addr string) {
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
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

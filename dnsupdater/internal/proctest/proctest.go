// Package proctest holds what the tests that run a real DNS server as a child process (BIND,
// Knot) share: a loopback port free over UDP and TCP, and a buffer for the process's output.
package proctest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a loopback port free over UDP and TCP at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port over UDP and TCP")
	return 0
}

// Output collects a process's output for reading while it runs.
type Output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Output) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Output) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

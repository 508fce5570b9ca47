// Package proctest holds what the tests that run a real DNS server as a child process (BIND,
// Knot) share: a loopback port free over UDP and TCP, and a buffer for the process's output.
package proctest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a loopback port free over UDP and TCP at the time of the call, below the
// kernel's range of ephemeral ports where it can: the kernel may hand a port of that range to
// another socket (a connection, or a listener on port 0, of the test's own) before the child
// process binds it, which once left knotd unable to listen ("address already in use") in CI.
func FreePort(t testing.TB) int {
	t.Helper()
	if low, ok := ephemeralLow(); ok && low > firstPort+1000 {
		for range 50 {
			if port := firstPort + rand.IntN(low-firstPort); free(port) {
				return port
			}
		}
	}
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if free(port) {
			return port
		}
	}
	t.Fatal("no free port over UDP and TCP")
	return 0
}

// firstPort is the lowest port FreePort returns from below the ephemeral range.
const firstPort = 10000

// free reports whether port can be bound on 127.0.0.1 over TCP and UDP.
func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow returns the first port of the range the kernel hands to outgoing connections.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	low, err := strconv.Atoi(f[0])
	return low, err == nil
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

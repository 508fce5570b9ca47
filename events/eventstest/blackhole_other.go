//go:build !unix

package eventstest

import (
	"runtime"
	"testing"
)

// Blackhole skips the test where no address can be left unanswered this way: on Windows a
// connection that finds a listener's backlog full is refused (WSAECONNREFUSED), where the unix
// kernels drop its SYN.
func Blackhole(t testing.TB) string {
	t.Helper()
	t.Skipf("no blackhole address on %s: a connection that finds a listener's backlog full is refused there, not left unanswered", runtime.GOOS)
	return ""
}

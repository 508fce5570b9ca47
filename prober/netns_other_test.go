//go:build !linux

package prober

import (
	"runtime"
	"testing"
)

// inIsolatedNetwork skips the test: network namespaces are Linux only (netns_linux_test.go).
func inIsolatedNetwork(t *testing.T, _ func()) {
	t.Helper()
	t.Skipf("no network namespace on %s: they are Linux only", runtime.GOOS)
}

//go:build unix

package eventstest

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the CPU the test process has used so far, in user and system space: what a
// benchmark reports per operation beside its time, since on a loaded machine the time moves
// with the other processes and the CPU much less.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

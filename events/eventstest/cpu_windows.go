package eventstest

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the CPU the test process has used so far, in user and kernel mode: what a
// benchmark reports per operation beside its time, since on a loaded machine the time moves
// with the other processes and the CPU much less.
func ProcessCPU(tb testing.TB) time.Duration {
	var created, exited, kernel, user syscall.Filetime
	p, err := syscall.GetCurrentProcess()
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.GetProcessTimes(p, &created, &exited, &kernel, &user); err != nil {
		tb.Fatal(err)
	}
	return ticks(kernel) + ticks(user)
}

// ticks is a FILETIME that counts a duration, in its unit of 100 ns.
func ticks(f syscall.Filetime) time.Duration {
	return time.Duration(int64(f.HighDateTime)<<32|int64(f.LowDateTime)) * 100
}

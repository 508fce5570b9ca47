//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// exited returns an error naming a child that has exited.
func (st *stack) exited() error {
	for _, p := range st.procs {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); err != nil {
			return fmt.Errorf("%s exited; see %s", p.name, p.logFile)
		}
		var ws syscall.WaitStatus
		if pid, _ := syscall.Wait4(p.cmd.Process.Pid, &ws, syscall.WNOHANG, nil); pid == p.cmd.Process.Pid {
			return fmt.Errorf("%s exited (%v); see %s", p.name, ws, p.logFile)
		}
	}
	return nil
}

// peakRSS is the peak resident set of an ended child, in bytes (ru_maxrss counts KiB on Linux;
// it is an int32 on 386 and arm, widened before it is scaled).
func peakRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return int64(ru.Maxrss) << 10
	}
	return 0
}

//go:build !unix

package main

import "os"

// exited is unix-only (kill(pid, 0), wait4 with WNOHANG): elsewhere a child that died is not
// named, and the run goes on without it.
func (st *stack) exited() error { return nil }

// peakRSS is unix-only (getrusage's ru_maxrss): elsewhere it is 0, unknown.
func peakRSS(*os.ProcessState) int64 { return 0 }

//go:build unix

package proxy

import "syscall"

// fileLimit is how many descriptors the process may hold open: RLIMIT_NOFILE's soft limit,
// which Go raised to (one under) the hard limit at start, and on macOS to at most
// kern.maxfilesperproc; 0 when it cannot be read.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return uint64(l.Cur)
}

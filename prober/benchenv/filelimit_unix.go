//go:build unix

package benchenv

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit lifts RLIMIT_NOFILE to want, or as far as allowed: a benchmark holds thousands
// of listeners and connections. Child processes inherit it.
func RaiseFileLimit(want uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read file limit: %w", err)
	}
	if l.Cur >= want {
		return l.Cur, nil
	}
	next := syscall.Rlimit{Cur: want, Max: max(l.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		next = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
			return l.Cur, fmt.Errorf("raise file limit: %w", err)
		}
	}
	return next.Cur, nil
}

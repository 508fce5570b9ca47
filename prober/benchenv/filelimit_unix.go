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
	if uint64(l.Cur) >= want {
		return uint64(l.Cur), nil
	}
	next := l
	setLimit(&next.Cur, want)
	setLimit(&next.Max, max(uint64(l.Max), want))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		next = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
			return uint64(l.Cur), fmt.Errorf("raise file limit: %w", err)
		}
	}
	return uint64(next.Cur), nil
}

// setLimit stores v in a field of syscall.Rlimit, a uint64 on most systems and an int64 on
// freebsd and dragonfly.
func setLimit[T int64 | uint64](field *T, v uint64) { *field = T(v) }

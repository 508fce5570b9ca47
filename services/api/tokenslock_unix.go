//go:build unix && (!solaris || illumos)

package api

import (
	"fmt"
	"os"
	"syscall"
)

// lockTokens waits for the lock of the tokens file f, held until f is closed, so that one detour
// token create or revoke reads the file and writes it before another reads it.
func lockTokens(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock tokens: %w", err)
	}
	return nil
}

//go:build unix && (!solaris || illumos)

package dnsupdater

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lock takes f's exclusive lock without waiting; the lock goes with the open file.
func lock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errDataDirInUse
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return nil
}

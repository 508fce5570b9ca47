//go:build unix && (!solaris || illumos)

package up

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes the lock of the data directory dir, held until release is called or the
// process ends: a second detour up on dir would run a second JetStream server on the same files.
func lockDataDir(dir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "up.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s: in use by another detour up; give each a --data-dir of its own", dir)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return func() { _ = f.Close() }, nil // closing the file releases its lock
}

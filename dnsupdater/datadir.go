package dnsupdater

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// lockFile is the name, inside the data directory, of the file a running server holds locked:
// two servers sharing one directory would each restart from the other's snapshot and serials,
// and serve a serial below one they served, or the same serial for other content.
const lockFile = "dns.lock"

// errDataDirInUse is returned when another process holds the data directory's lock.
var errDataDirInUse = errors.New("in use by another running dns server; give each server a --data-dir of its own")

// openDataDir takes the lock of dir, creating both if need be, and removes the temporary files
// that a crash during a write left (a whole base each, which a crash loop would pile up). The
// lock is held until release is called, or the process ends. Only a lock held by another
// process is an error: a directory that cannot be written (a full disk, a read-only mount) is
// told by warn, and the server starts from what it holds.
func openDataDir(dir string, warn func(error)) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, errDataDirInUse) {
			return nil, fmt.Errorf("data dir %s: %w", dir, err)
		}
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	for _, name := range []string{snapshotFile, serialsFile} {
		stale, _ := filepath.Glob(filepath.Join(dir, name+".*"))
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	return func() { f.Close() }, nil // closing the file releases its lock
}

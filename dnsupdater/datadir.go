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

// openDataDir creates dir if need be, takes its lock, and removes the temporary files that a
// crash during a write left (a whole base each, which a crash loop would pile up). The lock
// is held until release is called, or the process ends.
func openDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	for _, name := range []string{snapshotFile, serialsFile} {
		stale, _ := filepath.Glob(filepath.Join(dir, name+".*"))
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	return func() { f.Close() }, nil // closing the file releases its lock
}

// Package atomicfile replaces a file whole or not at all, and durably: what a role keeps on
// disk to start from without NATS (a DNS server's snapshot and serials, an edge's routes, the
// last active configuration) is never found empty or torn after a crash or a power cut.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// Write replaces dir/name with what write writes to it, making dir (0700) if it is missing: a
// temporary file in dir (0600), synced, renamed over name, then dir synced, so that once Write
// returns nil a crash or a power cut leaves the new file, and before that the old one, never
// an empty or partly written one. On an error the temporary file is removed and name is as it
// was.
func Write(dir, name string, write func(io.Writer) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make the directory of %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dir, tempPattern(name))
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	// The rename is durable once the directory is synced: without it a power cut may bring the
	// old file back. Windows cannot sync a directory (its handle refuses FlushFileBuffers), so
	// there the rename is left to the file system's own ordering.
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", name, err) // some file systems cannot sync a directory
	}
	return nil
}

// tempPattern is the pattern of Write's temporary files for name (os.CreateTemp's, and a glob).
func tempPattern(name string) string { return "." + name + ".*" }

// RemoveTemps removes from dir the temporary files that writes of name a crash cut short left
// there (a whole file each, which a crash loop would pile up), and those of the copies of Write
// before it (name+".*"). Only one process may write name in dir meanwhile: its write under way
// would fail.
func RemoveTemps(dir, name string) {
	for _, pattern := range []string{tempPattern(name), name + ".*"} {
		stale, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
}

// Bytes returns the write of b, for Write.
func Bytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}
}

package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/detourdev/detour/events/atomicfile"
)

// A write replaces the file whole, in a directory it makes if missing; one that fails leaves the
// file as it was and no temporary file beside it.
func TestAWriteReplacesTheFileWholeAndAFailedOneLeavesItAsItWas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := atomicfile.Write(dir, "snapshot.json", atomicfile.Bytes([]byte("first"))); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(dir, "snapshot.json", atomicfile.Bytes([]byte("second"))); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk full")
	err := atomicfile.Write(dir, "snapshot.json", func(w io.Writer) error {
		_, _ = w.Write([]byte("thi"))
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("a failed write returned %v, want it to wrap %v", err, broken)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "snapshot.json")); err != nil || string(b) != "second" {
		t.Fatalf("the file holds %q (%v) after a failed write, want the last whole one, %q", b, err, "second")
	}
	if fi, err := os.Stat(filepath.Join(dir, "snapshot.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file's mode is %v (%v), want 0600: it may hold secrets", fi.Mode().Perm(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the directory holds %q, want the file alone", names)
	}
}

package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestTheWorkDirectoryIsInMemoryUnlessTMPDIRNamesOne(t *testing.T) {
	var st unix.Statfs_t
	if unix.Statfs(shm, &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skipf("%s is not a tmpfs on this machine", shm)
	}
	t.Setenv("TMPDIR", "")
	if got := workRoot(); got != shm {
		t.Errorf("work root = %q, want %s", got, shm)
	}
	t.Setenv("TMPDIR", t.TempDir())
	if got := workRoot(); got != "" {
		t.Errorf("with TMPDIR set, work root = %q, want the temporary directory (\"\")", got)
	}
}

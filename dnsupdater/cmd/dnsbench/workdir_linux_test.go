package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestTheWorkDirectoryIsInMemoryUnlessTMPDIRNamesOne(t *testing.T) {
	if !shmUsable() {
		t.Skipf("%s is not a writable tmpfs with %d MB free on this machine", shm, minShm>>20)
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

func TestTheWorkDirectoryIsNotPutOnASmallTmpfs(t *testing.T) {
	for _, c := range []struct {
		name string
		st   unix.Statfs_t
		want bool
	}{
		{name: "a tmpfs with 24 GB free", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Bavail: 6 << 20}, want: true},
		{name: "a container's 64 MB /dev/shm", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Bavail: 16 << 10}, want: false},
		{name: "a large tmpfs nearly full", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Blocks: 6 << 20, Bavail: 100}, want: false},
		{name: "a disk", st: unix.Statfs_t{Type: unix.EXT4_SUPER_MAGIC, Bsize: 4096, Bavail: 6 << 20}, want: false},
	} {
		if got := roomy(c.st); got != c.want {
			t.Errorf("%s: roomy = %v, want %v", c.name, got, c.want)
		}
	}
}

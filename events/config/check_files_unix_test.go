//go:build unix

package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"golang.org/x/sys/unix"
)

// The prober reads these files as it builds its checks, all of them in turn: a file that never
// ends (a FIFO nobody writes, /dev/zero) or one far too long for a credential would stop or
// exhaust it, every check of every app with it. Each is refused at once, naming the field.
func TestAFileThatIsNotARegularFileOrIsTooLongIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, bytes.Repeat([]byte("a"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs, err := config.NewCredentialDirs(dir, "/dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		read func() error
		want string
	}{
		{"a FIFO as a check's file", func() error { _, _, err := dirs.ReadFile(fifo); return err },
			fifo + " is not a regular file"},
		{"/dev/zero as a check's file", func() error { _, _, err := dirs.ReadFile("/dev/zero"); return err },
			"/dev/zero is not a regular file"},
		{"a file of 1 MiB as a check's file", func() error { _, _, err := dirs.ReadFile(long); return err },
			long + " is longer than 65536 bytes"},
		{"a FIFO as a secret's file", func() error { _, err := config.ReadSecret(dirs, "", fifo, ""); return err },
			"secret_file: " + fifo + " is not a regular file"},
	} {
		done := make(chan error, 1)
		go func() { done <- tc.read() }()
		select {
		case err := <-done:
			if err == nil || err.Error() != tc.want {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			// The reader stays blocked; the test's end removes the FIFO's directory, not it.
			t.Fatalf("%s: still reading after 5s", tc.name)
		}
	}
}

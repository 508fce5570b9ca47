package eventstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

// ReplaceFile replaces the file at path with one holding content, as a secret manager or a
// Kubernetes volume rotates a credential: written beside it and renamed over it, so that no
// reader sees it half written. With settled, the new file's modification time is an hour past,
// as a copy that keeps its time has, so that a reader waiting for a changed file to settle
// takes it at once.
func ReplaceFile(tb testing.TB, path, content string, settled bool) {
	tb.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	if settled {
		past := time.Now().Add(-time.Hour)
		if err := os.Chtimes(path+".new", past, past); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Rename(path+".new", path); err != nil {
		tb.Fatal(err)
	}
}

// SecretFile writes secret and a newline to a file named name in a directory of its own, as a
// settled copy a secret manager wrote long ago, and returns the file's path, the directory
// allowed as a credential directory, and rotate, which replaces the file with another secret the
// same way (settled, renamed over it).
func SecretFile(tb testing.TB, name, secret string) (path string, dirs config.CredentialDirs, rotate func(secret string)) {
	tb.Helper()
	dir := tb.TempDir()
	path = filepath.Join(dir, name)
	rotate = func(secret string) { tb.Helper(); ReplaceFile(tb, path, secret+"\n", true) }
	rotate(secret)
	dirs, err := config.NewCredentialDirs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return path, dirs, rotate
}

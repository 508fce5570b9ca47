package eventstest

import (
	"os"
	"testing"
	"time"
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

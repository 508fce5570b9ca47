package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A file outside the credential directories, named as written or through a symlink inside one
// that leads out, is never looked at, not even with a stat: the path a configuration names is
// not one the process may consider (one on an automounted or hung NFS share would stall every
// look), and each look at it, every FileRecheck, goes no further than the directory check.
func TestAFileOutsideTheCredentialDirectoriesIsNeverStatted(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "token")
	if err := os.WriteFile(secret, []byte("Bearer outside\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	leadsOut := filepath.Join(dir, "leads-out")
	if err := os.Symlink(secret, leadsOut); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(dir, "inside")
	if err := os.WriteFile(inside, []byte("Bearer inside\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs, err := NewCredentialDirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var statted []string
	defer func(s func(string) (fs.FileInfo, error)) { statFile = s }(statFile)
	statFile = func(name string) (fs.FileInfo, error) {
		statted = append(statted, name)
		return os.Stat(name)
	}
	at := time.Now()
	now := func() time.Time { return at }
	parse := func(_ string, b []byte) (string, error) { return string(b), nil }
	for _, path := range []string{secret, leadsOut} {
		statted = nil
		w := WatchFile(path, dirs, parse, now, FileRecheck, FileLog{Log: zerolog.New(zerolog.NewTestWriter(t))})
		at = at.Add(FileRecheck)
		if v := w.Load(); !errors.Is(v.Err, ErrNotCredentialDir) {
			t.Errorf("%s: %q, %v; want it refused", path, v.S, v.Err)
		}
		if len(statted) != 0 {
			t.Errorf("%s: statted %q as it was refused; want no stat", path, statted)
		}
	}
	// A file inside is still looked at, or a rotation would go unseen.
	statted = nil
	w := WatchFile(inside, dirs, parse, now, FileRecheck, FileLog{Log: zerolog.New(zerolog.NewTestWriter(t))})
	at = at.Add(FileRecheck)
	if v := w.Load(); v.Err != nil || v.S != "Bearer inside\n" {
		t.Errorf("%s: %q, %v; want what it holds", inside, v.S, v.Err)
	}
	real, err := filepath.EvalSymlinks(inside)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(statted, real) {
		t.Errorf("%s: statted %q; want its real path among them", inside, statted)
	}
}

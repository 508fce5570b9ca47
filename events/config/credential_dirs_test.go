package config_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

// credentialDirs returns dirs as a process's credential directories.
func credentialDirs(t *testing.T, dirs ...string) config.CredentialDirs {
	t.Helper()
	d, err := config.NewCredentialDirs(dirs...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Whoever applies a configuration names the files; the process's operator names the
// directories they may be in. A file outside them, or led out of them by a symlink or "..", is
// refused whatever it holds, and the error says so without saying what is there.
func TestOnlyAFileInsideACredentialDirectoryIsRead(t *testing.T) {
	root := t.TempDir()
	creds, outside := filepath.Join(root, "creds"), filepath.Join(root, "outside")
	for _, d := range []string{creds, outside, filepath.Join(creds, "sub")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(creds, "auth"), "Bearer allowed\n")
	write(filepath.Join(creds, "sub", "auth"), "Bearer nested\n")
	write(filepath.Join(outside, "token"), "service-account-token\n")
	symlink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Skipf("no symlinks here: %v", err)
		}
	}
	symlink(filepath.Join(outside, "token"), filepath.Join(creds, "escape"))
	symlink(outside, filepath.Join(creds, "escapedir"))
	symlink("sub/auth", filepath.Join(creds, "inside"))
	dirs := credentialDirs(t, creds)
	for _, c := range []struct{ name, want, err string }{
		{filepath.Join(creds, "auth"), "Bearer allowed", ""},
		{filepath.Join(creds, "sub", "auth"), "Bearer nested", ""},
		{filepath.Join(creds, "inside"), "Bearer nested", ""},
		{filepath.Join(creds, "sub", "..", "auth"), "Bearer allowed", ""},
		{filepath.Join(outside, "token"), "", filepath.Join(outside, "token") + " is not in a credential directory of this process (" + creds + "): allow its directory with --credential-dir or $DETOUR_CREDENTIAL_DIRS where the process runs"},
		{creds + "/../outside/token", "", creds + "/../outside/token is not in a credential directory"},
		{filepath.Join(outside, "missing"), "", filepath.Join(outside, "missing") + " is not in a credential directory"},
		{creds, "", creds + " is not in a credential directory"},
		{filepath.Join(creds, "escape"), "", filepath.Join(creds, "escape") + " leads, through a symlink, out of the credential directories of this process (" + creds + "): not in a credential directory"},
		{filepath.Join(creds, "escapedir", "token"), "", filepath.Join(creds, "escapedir", "token") + " leads, through a symlink, out of"},
		// Told as one that exists is: else the error would say what exists where it leads.
		{filepath.Join(creds, "escapedir", "missing"), "", filepath.Join(creds, "escapedir", "missing") + " leads, through a symlink, out of"},
		{filepath.Join(creds, "escapedir", "missing", "deeper"), "", filepath.Join(creds, "escapedir", "missing", "deeper") + " leads, through a symlink, out of"},
	} {
		got, err := config.ReadSecret(dirs, "", c.name, "")
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), "secret_file: "+c.err) || !errors.Is(err, config.ErrNotCredentialDir)):
			t.Errorf("%s: %q, %v; want an error starting %q", c.name, got, err, "secret_file: "+c.err)
		case err != nil && strings.Contains(err.Error(), "service-account-token"):
			t.Errorf("%s: the error repeats what the file holds: %v", c.name, err)
		}
	}
	if _, err := config.ReadSecret(config.CredentialDirs{}, "", filepath.Join(creds, "auth"), ""); err == nil || !strings.Contains(err.Error(), "is not in a credential directory of this process (none)") {
		t.Errorf("without credential directories: %v, want every file refused", err)
	}
}

// A credential directory is checked when the process starts, so that a typo stops it there
// rather than refusing every file later.
func TestACredentialDirectoryMustBeAnExistingDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		filepath.Join(dir, "missing"): "credential directory lstat " + filepath.Join(dir, "missing") + ": no such file or directory",
		file:                          "credential directory " + file + " is not a directory",
	} {
		if _, err := config.NewCredentialDirs(name); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	if got := config.SplitCredentialDirs("/etc/detour::/run/secrets/shop" + string(filepath.ListSeparator)); strings.Join(got, ",") != "/etc/detour,/run/secrets/shop" {
		t.Errorf("SplitCredentialDirs = %q", got)
	}
}

// FuzzResolveStaysInsideTheCredentialDirectories: whatever name the configuration gives (".."
// and symlinks in any order, relative or absolute), a name Resolve lets through leads to a
// file inside the credential directory, and one whose real path is outside is refused.
func FuzzResolveStaysInsideTheCredentialDirectories(f *testing.F) {
	root := f.TempDir()
	creds, outside := filepath.Join(root, "creds"), filepath.Join(root, "outside")
	for _, d := range []string{creds, outside, filepath.Join(creds, "sub")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(creds, "auth"), filepath.Join(creds, "sub", "auth"), filepath.Join(outside, "token")} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	for target, name := range map[string]string{
		outside:                             filepath.Join(creds, "out"),
		filepath.Join(outside, "token"):     filepath.Join(creds, "sub", "token"),
		"..":                                filepath.Join(creds, "sub", "up"),
		"../outside":                        filepath.Join(creds, "rel"),
		filepath.Join(creds, "sub", "auth"): filepath.Join(outside, "back"),
	} {
		if err := os.Symlink(target, name); err != nil {
			f.Skipf("no symlinks here: %v", err)
		}
	}
	realCreds, err := filepath.EvalSymlinks(creds)
	if err != nil {
		f.Fatal(err)
	}
	dirs, err := config.NewCredentialDirs(creds)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"auth", "sub/auth", "out/token", "sub/token", "sub/up/auth", "sub/up/../outside/token", "rel/token", "../outside/back", "sub/../../creds/auth", "/etc/hostname", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(creds, name)
		}
		real, err := dirs.Resolve(name)
		if err != nil {
			return
		}
		if rel, rerr := filepath.Rel(realCreds, real); rerr != nil || rel == "." || strings.HasPrefix(rel, "..") {
			t.Fatalf("Resolve(%q) = %q, outside %s", name, real, realCreds)
		}
		if again, err := filepath.EvalSymlinks(real); err != nil || again != real {
			t.Fatalf("Resolve(%q) = %q, not a real path (%q, %v)", name, real, again, err)
		}
	})
}

// FuzzAFileValueIsTrimmedAndAnErrorNeverRepeatsIt: whatever a credential file holds, a TSIG
// key's value is base64 with no surrounding white space, a secret's and a header's are trimmed,
// and an error names the file, never what it holds.
func FuzzAFileValueIsTrimmedAndAnErrorNeverRepeatsIt(f *testing.F) {
	for _, s := range []string{"c2VjcmV0\n", "not base64!", " \n", "", "Bearer a\r\nX: b", "\tc2VjcmV0 \r\n"} {
		f.Add([]byte(s))
	}
	const file = "/etc/detour/k"
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, parse := range map[string]func(string, []byte) (string, error){
			"tsig": config.TSIGFileValue, "secret": config.SecretFileValue, "header": config.HeaderFileValue,
		} {
			v, err := parse(file, b)
			if err != nil {
				if held := strings.TrimSpace(string(b)); len(held) >= 4 && strings.Contains(err.Error(), held) && !strings.Contains(file, held) && !strings.Contains("want a base64 key in is empty holds a control character other than tab (CR, LF, NUL…)", held) {
					t.Fatalf("%s: the error %q repeats what the file holds", name, err)
				}
				continue
			}
			if v == "" || v != strings.TrimSpace(v) {
				t.Fatalf("%s: value %q is empty or not trimmed", name, v)
			}
			if _, derr := base64.StdEncoding.DecodeString(v); name == "tsig" && derr != nil {
				t.Fatalf("tsig: value %q is not base64", v)
			}
		}
	})
}

// A file swapped for a symlink out of the credential directories between the check of its real
// path and its opening (by someone who may write in the directory but not read the target) is
// refused as the symlink itself is: the file opened is the one checked, never the target.
func TestAFileSwappedForASymlinkOutAsItIsReadIsNeverReadOutside(t *testing.T) {
	root := t.TempDir()
	creds, outside := filepath.Join(root, "creds"), filepath.Join(root, "outside")
	for _, d := range []string{creds, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "seed"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	regular, token := filepath.Join(creds, "regular"), filepath.Join(creds, "token")
	if err := os.WriteFile(regular, []byte("inside"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := credentialDirs(t, creds)

	stop, stopped := make(chan struct{}), make(chan error, 1)
	go func() {
		// token, renamed over in turn by a hard link of regular and by a symlink out.
		link, sym := filepath.Join(creds, "link"), filepath.Join(creds, "sym")
		for {
			select {
			case <-stop:
				stopped <- nil
				return
			default:
			}
			for _, step := range []func() error{
				func() error { return os.Link(regular, link) },
				func() error { return os.Rename(link, token) },
				func() error { return os.Symlink(filepath.Join(outside, "seed"), sym) },
				func() error { return os.Rename(sym, token) },
			} {
				if err := step(); err != nil {
					stopped <- err
					return
				}
			}
		}
	}()
	inside, refused := 0, 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && (inside < 1000 || refused < 1000); {
		b, _, err := dirs.ReadFile(token)
		switch {
		case err == nil && string(b) == "inside":
			inside++
		case err == nil:
			close(stop)
			t.Fatalf("read %q, through a symlink out of the credential directories, after %d reads inside and %d refused", b, inside, refused)
		case errors.Is(err, config.ErrNotCredentialDir):
			refused++
		}
	}
	close(stop)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads inside, %d refused", inside, refused)
}

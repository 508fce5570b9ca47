package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// CredentialDirs are the directories a process may read the files its configuration names
// from (a check's headers_file and send_file, a TSIG key's or a webhook's secret_file, a
// webhook's url_file). The operator of the process sets them (--credential-dir,
// $DETOUR_CREDENTIAL_DIRS), never CONFIG: whoever may apply a configuration would otherwise
// choose any file the process can read (a service account's token, an nkey seed) and have a
// prober send it, as a header, to an address of their choosing. The zero value allows none.
type CredentialDirs struct {
	// given are the directories as given, absolute and cleaned; real are the same with every
	// symlink followed, as a file's real path is compared with them.
	given, real []string
}

// NewCredentialDirs returns the directories dirs, each of which must be an existing directory
// (a symlink to one is followed once, now). The error names the directory at fault.
func NewCredentialDirs(dirs ...string) (CredentialDirs, error) {
	var d CredentialDirs
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return CredentialDirs{}, fmt.Errorf("credential directory %q: %w", dir, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return CredentialDirs{}, fmt.Errorf("credential directory %w", err)
		}
		if fi, err := os.Stat(real); err != nil {
			return CredentialDirs{}, fmt.Errorf("credential directory %w", err)
		} else if !fi.IsDir() {
			return CredentialDirs{}, fmt.Errorf("credential directory %s is not a directory", dir)
		}
		d.given, d.real = append(d.given, abs), append(d.real, real)
	}
	return d, nil
}

// SplitCredentialDirs returns the directories of a list such as $DETOUR_CREDENTIAL_DIRS holds:
// separated as $PATH's are (':' but on Windows ';'), empty ones left out.
func SplitCredentialDirs(list string) []string {
	var out []string
	for _, d := range filepath.SplitList(list) {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// String lists the directories as given, or says there are none.
func (d CredentialDirs) String() string {
	if len(d.given) == 0 {
		return "none"
	}
	return strings.Join(d.given, ", ")
}

// ErrNotCredentialDir is the error of a file outside the credential directories.
var ErrNotCredentialDir = errors.New("not in a credential directory")

// Resolve returns the real path of the file named name (relative to the working directory
// when not absolute), every symlink followed, when it lies inside one of d, and an error
// wrapping ErrNotCredentialDir when it does not. A name that does not lie inside one as
// written is refused before the file system is asked anything about it, so that the error says
// nothing about what exists elsewhere; one that does but leads elsewhere (a symlink, "..")
// once resolved is refused without saying where it leads.
func (d CredentialDirs) Resolve(name string) (string, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", err
	}
	if !within(abs, d.given) && !within(abs, d.real) {
		return "", fmt.Errorf("%s is %w of this process (%s): allow its directory with --credential-dir or $DETOUR_CREDENTIAL_DIRS where the process runs", name, ErrNotCredentialDir, d)
	}
	real, err := filepath.EvalSymlinks(abs)
	pe := (*fs.PathError)(nil)
	switch {
	case errors.As(err, &pe) && within(pe.Path, d.real):
		// As opening it would have said (a missing file, a directory not searchable).
		return "", &fs.PathError{Op: "open", Path: name, Err: pe.Err}
	case errors.As(err, &pe):
		// Failed where a symlink led out (pe.Path, symlinks followed): refused as one that
		// exists there is, so that the error says nothing of what exists elsewhere.
		return "", d.ledOut(name)
	case err != nil:
		return "", err
	case !within(real, d.real):
		return "", d.ledOut(name)
	}
	return real, nil
}

// ledOut is the error of the file named name, inside one of d as written, which a symlink
// leads out of them.
func (d CredentialDirs) ledOut(name string) error {
	return fmt.Errorf("%s leads, through a symlink, out of the credential directories of this process (%s): %w", name, d, ErrNotCredentialDir)
}

// Holds reports whether path (a file or a directory, which need not exist yet) is one of d or
// lies inside one, its symlinks followed as far as it exists: where the process keeps a secret
// of its own (an nkey seed, the API's tokens), which any configuration could then name.
func (d CredentialDirs) Holds(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	real, rest := abs, ""
	for {
		if r, err := filepath.EvalSymlinks(real); err == nil {
			real = filepath.Join(r, rest)
			break
		}
		parent := filepath.Dir(real)
		if parent == real {
			break
		}
		real, rest = parent, filepath.Join(filepath.Base(real), rest)
	}
	in := func(p string, dirs []string) bool {
		return slices.Contains(dirs, p) || within(p, dirs)
	}
	return in(abs, d.given) || in(abs, d.real) || in(real, d.real)
}

// within reports whether path, absolute and clean, lies inside one of dirs (but is not one).
func within(path string, dirs []string) bool {
	for _, dir := range dirs {
		if rel, err := filepath.Rel(dir, path); err == nil && rel != "." && rel != ".." &&
			!strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

// ReadFile returns what the regular file named name holds, at most maxFileBytes, and the
// description of the file it opened, when the file lies inside one of d (Resolve). The file is
// opened beneath the directory its real path lies in (os.Root), so that one swapped for a
// symlink out between the check and the opening (by whoever may write in the directory) is
// refused, not followed. What is not a regular file (a FIFO nobody writes, /dev/zero) is
// refused, opened without waiting for a writer: the prober reads these files as it builds its
// checks, all in turn, and one that never ended would stop them all. The error names the file,
// never what it holds.
func (d CredentialDirs) ReadFile(name string) ([]byte, fs.FileInfo, error) {
	real, err := d.Resolve(name)
	if err != nil {
		return nil, nil, err
	}
	dir := d.outermost(real)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("credential directory %w", err)
	}
	defer root.Close()
	rel, err := filepath.Rel(dir, real)
	if err != nil {
		return nil, nil, err
	}
	b, fi, err := readRegular(name, root, rel)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) && !errors.As(pe.Err, new(syscall.Errno)) {
		// os.Root's refusal of a path that escapes it: no error of the file system's.
		return nil, nil, d.ledOut(name)
	}
	return b, fi, err
}

// outermost returns the outermost of the real directories of d that real, the real path of a
// file inside one (Resolve), lies in: a directory nested in another may be replaced by whoever
// may write in the other.
func (d CredentialDirs) outermost(real string) string {
	out := ""
	for _, dir := range d.real {
		if within(real, []string{dir}) && (out == "" || len(dir) < len(out)) {
			out = dir
		}
	}
	return out
}

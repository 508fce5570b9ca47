package dnsupdater

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/detourdev/detour/events/atomicfile"
	"github.com/google/uuid"
)

// lockFile is the name, inside the data directory, of the file a running server holds locked:
// two servers sharing one directory would each restart from the other's snapshot and serials,
// and serve a serial below one they served, or the same serial for other content.
const lockFile = "dns.lock"

// errDataDirInUse is returned when another process holds the data directory's lock.
var errDataDirInUse = errors.New("in use by another running dns server; give each server a --data-dir of its own")

// openDataDir takes the lock of dir, creating both if need be, and removes the temporary files
// that a crash during a write left (a whole base each, which a crash loop would pile up). The
// lock is held until release is called, or the process ends. Only a lock held by another
// process is an error: a directory that cannot be written (a full disk, a read-only mount) is
// told by warn, and the server starts from what it holds.
func openDataDir(dir string, warn func(error)) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, errDataDirInUse) {
			return nil, fmt.Errorf("data dir %s: %w", dir, err)
		}
		warn(fmt.Errorf("data dir %s: %w", dir, err))
		return func() {}, nil
	}
	for _, name := range []string{snapshotFile, serialsFile, serverIDFile} {
		atomicfile.RemoveTemps(dir, name)
	}
	return func() { f.Close() }, nil // closing the file releases its lock
}

// serverIDFile is the name, inside the data directory, of the server's id: the DNS servers of a
// deployment write their zone versions on the same subjects, and a server that rebuilds its IXFR
// history at start must step through only its own, whose serials another's may repeat with
// other content. Names are not enough: two hosts may share one (ns1.eu and ns1.us are both ns1).
const serverIDFile = "dns-server-id"

// loadServerID returns the id the data directory dir holds, writing a new one when it holds
// none (a first start) or one that does not parse (a damaged file: damaged then says so). An
// error means that no id could be kept: the caller then takes one for this run only.
func loadServerID(dir string) (id string, damaged, err error) {
	b, err := os.ReadFile(filepath.Join(dir, serverIDFile))
	switch {
	case err == nil:
		u, perr := uuid.Parse(strings.TrimSpace(string(b)))
		if perr == nil {
			return u.String(), nil, nil
		}
		damaged = fmt.Errorf("%s: %w", filepath.Join(dir, serverIDFile), perr)
	case !errors.Is(err, fs.ErrNotExist):
		return "", nil, fmt.Errorf("read server id: %w", err)
	}
	id = uuid.NewString()
	if err := atomicfile.Write(dir, serverIDFile, func(w io.Writer) error {
		_, err := io.WriteString(w, id+"\n")
		return err
	}); err != nil {
		return "", damaged, fmt.Errorf("write server id: %w", err)
	}
	return id, damaged, nil
}

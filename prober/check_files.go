package prober

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// fileRecheck is how often, at most, a check's file (headers_file, send_file) is looked at again
// while its checks run: a stat of its path, and a read when that finds another file, another
// size or another modification time. A credential rotated by a symlink's swap (a Kubernetes
// secret's mount), a rename over the file or a rewrite in place is used within it.
const fileRecheck = 5 * time.Second

// checkFiles are the files the checks of one configuration read (headers_file, send_file), each
// read once as the checks are built, however many checks share it, and looked at again at most
// every recheck while they run. A configuration's checks have files of their own: nothing read
// for one is kept for the next.
type checkFiles struct {
	dirs    config.CredentialDirs
	recheck time.Duration
	now     func() time.Time
	log     zerolog.Logger
	m       map[fileKey]*checkFile
}

// fileKey names a file as one kind of value: a header's (trimmed) or what a tcp check sends (as
// it is).
type fileKey struct {
	path   string
	header bool
}

// newCheckFiles returns the files of one configuration's checks, read only in dirs, looked at
// again at most every recheck of now, with what happens to them logged to log.
func newCheckFiles(now func() time.Time, log zerolog.Logger, recheck time.Duration, dirs config.CredentialDirs) *checkFiles {
	return &checkFiles{dirs: dirs, recheck: recheck, now: now, log: log, m: map[fileKey]*checkFile{}}
}

// header returns the file at path as a header's value (config.HeaderFileValue), read now if no
// check built before read it.
func (cf *checkFiles) header(path string) *checkFile {
	return cf.file(fileKey{path, true}, config.HeaderFileValue)
}

// send returns the file at path as what a tcp check sends (config.SendFileValue), read now if no
// check built before read it.
func (cf *checkFiles) send(path string) *checkFile {
	return cf.file(fileKey{path, false}, config.SendFileValue)
}

func (cf *checkFiles) file(k fileKey, parse func(string, []byte) (string, error)) *checkFile {
	if f := cf.m[k]; f != nil {
		return f
	}
	f := &checkFile{path: k.path, dirs: cf.dirs, parse: parse, recheck: cf.recheck, now: cf.now, log: cf.log}
	f.next.Store(cf.now().Add(cf.recheck).UnixNano())
	f.look()
	cf.m[k] = f
	return f
}

// checkFile is one file the checks read, with what they use of it.
type checkFile struct {
	path    string
	dirs    config.CredentialDirs
	parse   func(path string, b []byte) (string, error)
	recheck time.Duration
	now     func() time.Time
	log     zerolog.Logger
	// next is the instant (Unix nanoseconds) before which the file is not looked at again.
	next atomic.Int64
	// v is what the checks use: the last value read well or, while none was, why.
	v atomic.Pointer[fileValue]
	// mu is held by the one look at the file at a time, and guards info, failing and pending.
	mu sync.Mutex
	// info describes the file v was last read from, at readAt (the system clock's, as the file's
	// times are); nil while none was read well.
	info   fs.FileInfo
	readAt time.Time
	// failing is set once a read that left v as it was, or left it without a value, is logged
	// or failed, until a read goes well.
	failing bool
	// pending describes the file as a look found it changed but not settled, nil when none did.
	pending fs.FileInfo
}

// fileValue is a file's value, or the error that left the checks without one.
type fileValue struct {
	s   string
	err error
}

// load returns what the checks use of the file, looking at the file first when it has not for
// a recheck: one caller looks, the others use what it had.
func (f *checkFile) load() *fileValue {
	if now, next := f.now().UnixNano(), f.next.Load(); now >= next && f.next.CompareAndSwap(next, now+int64(f.recheck)) {
		f.look()
	}
	return f.v.Load()
}

// look reads the file when it is another than the one its value was read from (a stat, following
// a symlink, finds another file, size or modification time), with the safety rules of
// config.CredentialDirs.ReadFile: a file outside dirs is never read, and that is logged once. A
// file found changed is taken only once it is settled (fileSettle): until then, the checks keep
// the value they have, if one was read well, and the file is looked at again a fileSettle later.
// A read that fails keeps the value read before, if one was, and is logged once until one goes
// well; the log names the file, never what it holds.
func (f *checkFile) look() {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err == nil && f.info != nil && sameFile(f.info, fi) && f.readAt.Sub(fi.ModTime()) > mtimeGrain {
		f.pending = nil
		return
	}
	old := f.v.Load()
	if err == nil && !f.settled(fi, time.Now()) {
		f.pending = fi
		f.next.Store(f.now().Add(fileSettle).UnixNano())
		if old != nil && old.err == nil {
			return
		}
		// Nothing better to use meanwhile: read it now, and again once it settled.
	} else {
		f.pending = nil
	}
	readAt := time.Now()
	b, fi, err := f.dirs.ReadFile(f.path)
	var s string
	if err == nil {
		s, err = f.parse(f.path, b)
	}
	switch {
	case err != nil && f.info == nil:
		if errors.Is(err, config.ErrNotCredentialDir) && !f.failing {
			f.log.Warn().Err(err).Str("file", f.path).Msg("check file refused: not in a credential directory")
		}
		f.v.Store(&fileValue{err: err})
		f.failing = true
	case err != nil:
		if !f.failing {
			f.log.Warn().Err(err).Str("file", f.path).Msg("check file not read again: its checks keep what it held")
		}
		f.failing = true
	default:
		f.info, f.readAt, f.failing = fi, readAt, false
		if old != nil && old.err == nil && old.s == s {
			return
		}
		if old != nil {
			f.log.Info().Str("file", f.path).Msg("check file changed: its checks use what it holds now")
		}
		f.v.Store(&fileValue{s: s})
	}
}

// fileSettle is how long a file found changed must stay the same before the checks use what it
// holds: a credential rewritten in place (truncated, then written, perhaps in several writes)
// read between its writes is empty or cut short, and sending that would fail the checks.
// A rotation is used within fileRecheck and fileSettle.
const fileSettle = time.Second

// settled reports whether the file fi describes, found changed at wall (the system clock's, as
// file times are), can be read whole: its modification time a fileSettle before wall, or the
// same file, size and time seen at the look before, a fileSettle ago (which a modification time
// in the future, from a skewed clock, cannot stop).
func (f *checkFile) settled(fi fs.FileInfo, wall time.Time) bool {
	return wall.Sub(fi.ModTime()) >= fileSettle || f.pending != nil && sameFile(f.pending, fi)
}

// mtimeGrain bounds how coarse a file system's modification times are (FAT's are 2 s; Linux's
// move by a clock tick): a file read less than this after its modification time may be written
// again, with the same size, without its time changing, so it is read again at the next look,
// as git treats a "racily clean" file.
const mtimeGrain = 2 * time.Second

// sameFile reports whether a and b describe one file, unchanged.
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

package config

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// FileRecheck is how often, at most, a file a value is read from (a check's headers_file or
// send_file, a TSIG key's or a webhook's secret_file) is looked at again while the value is
// used: a stat of its real path (Resolve: none of a path outside the credential directories),
// and a read when that finds another file, another size or another modification time. A
// credential rotated by a symlink's swap (a Kubernetes secret's mount), a rename over the file
// or a rewrite in place is used within it and FileSettle.
const FileRecheck = 5 * time.Second

// FileSettle is how long a file found changed must stay the same before its value is used: a
// credential rewritten in place (truncated, then written, perhaps in several writes) read
// between its writes is empty or cut short, and using that would fail whatever it signs or is
// sent with.
const FileSettle = time.Second

// mtimeGrain bounds how coarse a file system's modification times are (FAT's are 2 s; Linux's
// move by a clock tick): a file read less than this after its modification time may be written
// again, with the same size, without its time changing, so it is read again at the next look,
// as git treats a "racily clean" file.
const mtimeGrain = 2 * time.Second

// FileLog is what a WatchedFile logs, each message constant, with the file's path (field file)
// and, for a failure, why: never what the file holds.
type FileLog struct {
	Log zerolog.Logger
	// Changed is logged at info when a read finds another value than the one in use.
	Changed string
	// Kept is logged at warn, once until a read goes well, when a read fails and the value
	// read before stays in use.
	Kept string
	// Refused is logged at warn, once, when the file is outside the credential directories.
	Refused string
}

// WatchedFile is a file a value is read from: read once as it is made, and looked at again at
// most every recheck while the value is used (Load). A file found changed is taken only once it
// has settled (FileSettle): until then, the value read before stays in use, if one was read
// well. A read that fails keeps the value read before, if one was.
type WatchedFile struct {
	path    string
	dirs    CredentialDirs
	parse   func(path string, b []byte) (string, error)
	recheck time.Duration
	now     func() time.Time
	log     FileLog
	// next is the instant (Unix nanoseconds) before which the file is not looked at again.
	next atomic.Int64
	// v is what is used: the last value read well or, while none was, why.
	v atomic.Pointer[FileValue]
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

// FileValue is a file's value, or the error that left its users without one.
type FileValue struct {
	S   string
	Err error
}

// WatchFile returns the file at path, read now if it lies in one of dirs, its value what parse
// makes of what it holds (HeaderFileValue, SendFileValue…), looked at again at most every
// recheck of now, with what happens to it logged to log.
// A file whose first read fails while it is changing (rewritten in place, truncated with its
// value to come) is read again as it settles, for at most firstSettles FileSettles: it has no
// value before to keep, and a TSIG key or webhook secret without one refuses its version.
func WatchFile(path string, dirs CredentialDirs, parse func(path string, b []byte) (string, error), now func() time.Time, recheck time.Duration, log FileLog) *WatchedFile {
	f := &WatchedFile{path: path, dirs: dirs, parse: parse, recheck: recheck, now: now, log: log}
	f.next.Store(now().Add(recheck).UnixNano())
	f.look()
	for range firstSettles {
		if !f.unsettledFailure() {
			break
		}
		time.Sleep(FileSettle)
		f.look()
	}
	return f
}

// firstSettles bounds the FileSettles WatchFile waits for a file changing as it is first read.
const firstSettles = 3

// unsettledFailure reports whether the file has no value, for a reason other than its place,
// and was changing when last looked at.
func (f *WatchedFile) unsettledFailure() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.v.Load()
	return f.pending != nil && v.Err != nil && !errors.Is(v.Err, ErrNotCredentialDir)
}

// Load returns the value in use, looking at the file first when it has not for a recheck: one
// caller looks, the others use what it had.
func (f *WatchedFile) Load() *FileValue {
	if now, next := f.now().UnixNano(), f.next.Load(); now >= next && f.next.CompareAndSwap(next, now+int64(f.recheck)) {
		f.look()
	}
	return f.v.Load()
}

// look reads the file when it is another than the one its value was read from (a stat of its
// real path, found inside dirs, finds another file, size or modification time), with the safety
// rules of CredentialDirs.ReadFile: a file outside dirs is never statted nor read, and that is
// logged once. A file
// found changed is taken only once it is settled: until then, the value in use stays, if one was
// read well, and the file is looked at again a FileSettle later. A read that fails keeps the
// value read before, if one was, and is logged once until one goes well.
func (f *WatchedFile) look() {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The path is resolved, and refused when outside dirs, before anything about the file is
	// asked: what the process may not read it does not stat either.
	real, err := f.dirs.Resolve(f.path)
	var fi fs.FileInfo
	if err == nil {
		fi, err = statFile(real)
	}
	if err == nil && f.info != nil && sameFile(f.info, fi) && f.readAt.Sub(fi.ModTime()) > mtimeGrain {
		f.pending = nil
		return
	}
	old := f.v.Load()
	if err == nil && !f.settled(fi, time.Now()) {
		f.pending = fi
		f.next.Store(f.now().Add(FileSettle).UnixNano())
		if old != nil && old.Err == nil {
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
		if errors.Is(err, ErrNotCredentialDir) && !f.failing {
			f.log.Log.Warn().Err(err).Str("file", f.path).Msg(f.log.Refused)
		}
		f.v.Store(&FileValue{Err: err})
		f.failing = true
	case err != nil:
		if !f.failing {
			f.log.Log.Warn().Err(err).Str("file", f.path).Msg(f.log.Kept)
		}
		f.failing = true
	default:
		f.info, f.readAt, f.failing = fi, readAt, false
		if old != nil && old.Err == nil && old.S == s {
			return
		}
		if old != nil {
			f.log.Log.Info().Str("file", f.path).Msg(f.log.Changed)
		}
		f.v.Store(&FileValue{S: s})
	}
}

// settled reports whether the file fi describes, found changed at wall (the system clock's, as
// file times are), can be read whole: its modification time a FileSettle before wall, or the
// same file, size and time seen at the look before, a FileSettle ago (which a modification time
// in the future, from a skewed clock, cannot stop).
func (f *WatchedFile) settled(fi fs.FileInfo, wall time.Time) bool {
	return wall.Sub(fi.ModTime()) >= FileSettle || f.pending != nil && sameFile(f.pending, fi)
}

// statFile is os.Stat, which a test replaces to see what is statted.
var statFile = os.Stat

// sameFile reports whether a and b describe one file, unchanged.
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

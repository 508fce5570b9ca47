package prober

import (
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// checkFiles are the files the checks of one configuration read (headers_file, send_file), each
// read once as the checks are built, however many checks share it, and looked at again at most
// every recheck while they run (config.WatchedFile). A configuration's checks have files of
// their own: nothing read for one is kept for the next.
type checkFiles struct {
	dirs    config.CredentialDirs
	recheck time.Duration
	now     func() time.Time
	log     zerolog.Logger
	m       map[fileKey]*config.WatchedFile
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
	return &checkFiles{dirs: dirs, recheck: recheck, now: now, log: log, m: map[fileKey]*config.WatchedFile{}}
}

// header returns the file at path as a header's value (config.HeaderFileValue), read now if no
// check built before read it.
func (cf *checkFiles) header(path string) *config.WatchedFile {
	return cf.file(fileKey{path, true}, config.HeaderFileValue)
}

// send returns the file at path as what a tcp check sends (config.SendFileValue), read now if no
// check built before read it.
func (cf *checkFiles) send(path string) *config.WatchedFile {
	return cf.file(fileKey{path, false}, config.SendFileValue)
}

func (cf *checkFiles) file(k fileKey, parse func(string, []byte) (string, error)) *config.WatchedFile {
	if f := cf.m[k]; f != nil {
		return f
	}
	f := config.WatchFile(k.path, cf.dirs, parse, cf.now, cf.recheck, config.FileLog{
		Log:     cf.log,
		Changed: "check file changed: its checks use what it holds now",
		Kept:    "check file not read again: its checks keep what it held",
		Refused: "check file refused: not in a credential directory",
	})
	cf.m[k] = f
	return f
}

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// workRoot is where the work directory is made: the temporary directory TMPDIR names when it is
// set; else /dev/shm when it is a tmpfs this program may write to, so that neither the servers
// nor dnsperf wait for a disk (in the latency run dnsperf flushes a line per answer, a write(2)
// each); else the system's temporary directory.
func workRoot() string {
	if os.Getenv("TMPDIR") != "" {
		return ""
	}
	var st unix.Statfs_t
	if unix.Statfs(shm, &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access(shm, unix.W_OK) == nil {
		return shm
	}
	return ""
}

// shm is the memory-backed directory most Linux systems mount.
const shm = "/dev/shm"

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// workRoot is where the work directory is made: the temporary directory TMPDIR names when it is
// set; else /dev/shm when it is a tmpfs with room (roomy) this program may write to, so that
// neither the servers nor dnsperf wait for a disk (in the latency run dnsperf flushes a line per
// answer, a write(2) each); else the system's temporary directory.
func workRoot() string {
	if os.Getenv("TMPDIR") == "" && shmUsable() {
		return shm
	}
	return ""
}

// shmUsable reports whether shm is a roomy tmpfs this program may write to.
func shmUsable() bool {
	var st unix.Statfs_t
	return unix.Statfs(shm, &st) == nil && roomy(st) && unix.Access(shm, unix.W_OK) == nil
}

// roomy reports whether the file system statfs described is a tmpfs with minShm free. The latency
// run's dnsperf output is about 36 bytes an answer (80 MB for 30 s at 75,000 qps), and a container
// gets a /dev/shm of 64 MB by default: dnsperf, out of room, still exits 0, having lost its
// summary, and the server would read as answering nothing.
func roomy(st unix.Statfs_t) bool {
	return st.Type == unix.TMPFS_MAGIC && uint64(st.Bavail)*uint64(st.Bsize) >= minShm
}

// shm is the memory-backed directory most Linux systems mount.
const shm = "/dev/shm"

// minShm is the room roomy wants on shm.
const minShm = 256 << 20

//go:build unix

package proxy

import "syscall"

// pending reports whether rc's socket holds something to read, data or its end, by one
// non-blocking peek; a failure to look counts as something.
func pending(rc syscall.RawConn) bool {
	var b [1]byte
	readable := true
	if err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		readable = err != syscall.EAGAIN
		return true
	}); err != nil {
		return true
	}
	return readable
}

//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// quiet reports whether nothing can be read from c without waiting: no unsolicited byte and no
// end of stream. It is the check net/http's Transport makes with a reader per idle connection,
// made here with one non-blocking peek when the connection is taken from the pool.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	readable := true
	if err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		readable = err != syscall.EAGAIN
		return true
	}); err != nil {
		return false
	}
	return !readable
}

package proxy

import (
	"net"
	"syscall"
)

// quiet reports whether nothing can be read from c without waiting: no unsolicited byte and no
// end of stream. It is the check net/http's Transport makes with a reader per idle connection,
// made here once, when the connection is taken from the pool (pending, per system). A
// connection whose socket cannot be reached is not quiet.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	return !pending(rc)
}

//go:build linux || android || darwin || ios || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// resetWhileHalfClosed reports, once it finds it, that c, whose end was read, was reset (a client
// gone, or one that closed it fully: its system resets it at the answer's first bytes): a read of c
// finds its end at once, and never a reset that follows. It waits in the poller for the socket's
// next event, which a reset is, with no timer and no look until one comes, so a parked client costs
// nothing: these systems' pollers are edge-triggered, and a socket at its end, always ready, wakes
// a wait only at a new event (quiet_ticker.go has the others'). It reports false once c's read
// deadline passed, which is how its callers stop it (when they close stop, they put that deadline
// in the past); c closed under it (the edge stopping) or a poller that fails it is a client gone,
// as a reset is, so that its request is cancelled upstream.
func resetWhileHalfClosed(c net.Conn, stop <-chan struct{}) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		<-stop // no socket (net.Pipe's), no reset
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	err = rc.Read(func(fd uintptr) bool { return lookFD(fd) == lookData })
	return !errors.Is(err, os.ErrDeadlineExceeded) // nil: the look found a reset
}

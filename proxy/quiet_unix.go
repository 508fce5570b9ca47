//go:build unix

package proxy

import "syscall"

// lookFD peeks at the socket fd without waiting: lookNothing, lookData, or lookEnd when the
// peek finds the end of the stream; a failure to look counts as data, and so does a reset that
// followed the end, which the peek does not report (Linux reads the end again and again) but the
// socket's pending error does.
func lookFD(fd uintptr) int {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN:
		return lookNothing
	case err == nil && n == 0:
		if e, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR); err == nil && e == 0 {
			return lookEnd
		}
	}
	return lookData
}

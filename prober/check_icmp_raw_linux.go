package prober

import (
	"net"

	"golang.org/x/sys/unix"
)

// forceReadBuffer gets size bytes of receive buffer on ip with SO_RCVBUFFORCE, past
// net.core.rmem_max, and reports whether it did: only as root (CAP_NET_ADMIN), not for a raw
// socket allowed by CAP_NET_RAW alone.
func forceReadBuffer(ip *net.IPConn, size int) bool {
	rc, err := ip.SyscallConn()
	if err != nil {
		return false
	}
	var forced error
	if err := rc.Control(func(fd uintptr) {
		forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return false
	}
	return forced == nil
}

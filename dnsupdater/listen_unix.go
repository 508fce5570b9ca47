//go:build unix && !solaris

package dnsupdater

import (
	"fmt"
	"net"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultUDPSockets is Options.UDPSockets' default: on Linux half of GOMAXPROCS, at least 1 and
// at most 16; elsewhere 1, as the BSDs' and macOS's SO_REUSEPORT delivers unicast datagrams to
// one of the sockets, so the others would only wait.
func defaultUDPSockets() int {
	if runtime.GOOS != "linux" {
		return 1
	}
	return min(max(runtime.GOMAXPROCS(0)/2, 1), 16)
}

// udpListenConfig returns how each of a server's n UDP sockets is bound: with SO_REUSEPORT when
// there are several, so that they share the port (Linux spreads clients over them).
func udpListenConfig(n int) (net.ListenConfig, error) {
	if n > 1 {
		return net.ListenConfig{Control: reusePort}, nil
	}
	return net.ListenConfig{}, nil
}

// reusePort sets SO_REUSEPORT on a socket before it is bound.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
}

//go:build !unix

package dnsupdater

import (
	"fmt"
	"net"
	"runtime"
)

// defaultUDPSockets is Options.UDPSockets' default where UDP sockets cannot share a port: 1.
func defaultUDPSockets() int { return 1 }

// udpListenConfig returns how a server's UDP socket is bound, and refuses several: they would
// need SO_REUSEPORT, which this system lacks (Windows' SO_REUSEADDR lets them all bind, but
// delivers each client's datagrams to one of them only).
func udpListenConfig(n int) (net.ListenConfig, error) {
	if n > 1 {
		return net.ListenConfig{}, fmt.Errorf("UDPSockets %d: several UDP sockets cannot share one port on %s, which has no SO_REUSEPORT: use 1", n, runtime.GOOS)
	}
	return net.ListenConfig{}, nil
}

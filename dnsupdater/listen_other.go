//go:build !unix || solaris

package dnsupdater

import (
	"fmt"
	"net"
	"runtime"
)

// defaultUDPSockets is Options.UDPSockets' default where UDP sockets cannot share a port: 1.
func defaultUDPSockets() int { return 1 }

// udpListenConfig returns how a server's UDP socket is bound, and refuses several: they would
// need SO_REUSEPORT, which Windows lacks (its SO_REUSEADDR lets them all bind, but delivers each
// client's datagrams to one of them only), and which Go's golang.org/x/sys/unix does not define
// for illumos and Solaris.
func udpListenConfig(n int) (net.ListenConfig, error) {
	if n > 1 {
		return net.ListenConfig{}, fmt.Errorf("UDPSockets %d: several UDP sockets cannot share one port on %s, where Detour cannot set SO_REUSEPORT: use 1", n, runtime.GOOS)
	}
	return net.ListenConfig{}, nil
}

//go:build windows || solaris || illumos || aix

package proxy

import (
	"net"
	"time"
)

// resetLook is how often the connection of a client that half-closed it is looked at while its
// answer waits, for a reset (a client gone, or one that closed it fully: its system resets it at
// the answer's first bytes): a read of it finds its end at once, and never a reset that follows.
// Windows has no wait for a socket's next event that its end does not end at once (a zero-byte
// read, RawConn.Read's wait, completes at the end), nor have the level-triggered pollers of
// illumos, Solaris (event ports) and AIX (poll): a socket at its end is ready at once, each
// time a wait arms it, and a watch parked there (quiet_poller.go) would spin a core for each
// such client. The socket is looked at instead.
const resetLook = 500 * time.Millisecond

// resetWhileHalfClosed reports, once it finds it, that c, whose end was read, was reset; it
// looks every resetLook until stop is closed, and then reports false.
func resetWhileHalfClosed(c net.Conn, stop <-chan struct{}) bool {
	var look socketLook
	tick := time.NewTicker(resetLook)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return false
		case <-tick.C:
			if look.at(c) == lookData {
				return true
			}
		}
	}
}

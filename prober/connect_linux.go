package prober

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// connectOnly is the whole of a TCP check without send or expect, the check a region runs most:
// open a connection to addr within ctx and reset it. It reports what net.Dialer's DialTCP and
// abort would, as the same error (TestConnectOnlyMatchesTheDialer), in 8 system calls where
// net.Dialer and abort make 12: socket, connect, the poller's add (with fcntl), a second connect
// for the outcome, SO_LINGER, the poller's delete and close. net.Dialer also binds the wildcard
// address (an ephemeral port reserved by bind, then a second search by connect), reads
// SO_ERROR and getpeername for the outcome, and reads both addresses and sets TCP_NODELAY on a
// connection the check never uses. A scoped IPv6 address goes through net.Dialer, which knows
// its interface's index.
func connectOnly(ctx context.Context, d *net.Dialer, addr netip.AddrPort) error {
	if addr.Addr().Zone() != "" {
		return dialOnly(ctx, d, addr)
	}
	ip := addr.Addr().Unmap()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return dialError(addr, os.NewSyscallError("socket", err))
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		resetClose(fd)
		return nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
	default:
		_ = unix.Close(fd)
		return dialError(addr, os.NewSyscallError("connect", err))
	}
	// Wait for the connect on the runtime's poller, as net.Dialer does: os.NewFile registers a
	// non-blocking descriptor with it, and its Close deregisters and closes it.
	f := os.NewFile(uintptr(fd), "")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return dialError(addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(dl); err != nil {
			_ = f.Close()
			return dialError(addr, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(aLongTimeAgo) })
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		// A second connect tells all three states in one call: still connecting (EALREADY),
		// connected (nil, or EISCONN), or the error that ended it (ECONNREFUSED, EHOSTUNREACH…),
		// where net.Dialer reads SO_ERROR and then getpeername.
		switch err := unix.Connect(int(fd), sa); err {
		case nil, unix.EISCONN:
			return true
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			return false
		default:
			cerr = os.NewSyscallError("connect", err)
			return true
		}
	})
	if !stop() && werr != nil {
		// The context ended the wait: name its cause as net.Dialer does.
		werr = ctx.Err()
		if errors.Is(werr, context.DeadlineExceeded) {
			werr = os.ErrDeadlineExceeded
		}
	}
	if cerr == nil && werr == nil {
		// A reset rather than a FIN, as abort does: neither side keeps the socket in TIME_WAIT.
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		})
	}
	_ = f.Close()
	if cerr == nil {
		cerr = werr
	}
	if cerr != nil {
		return dialError(addr, cerr)
	}
	return nil
}

// resetClose closes a connected socket with a reset.
func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	_ = unix.Close(fd)
}

// aLongTimeAgo is a deadline that has passed: setting it ends a wait at once.
var aLongTimeAgo = time.Unix(1, 0)

// dialError wraps err as net.Dialer's DialTCP reports a failed dial to addr from the wildcard
// address: "dial tcp :0->127.0.0.1:1: connect: connection refused".
func dialError(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Source: &net.TCPAddr{}, Addr: net.TCPAddrFromAddrPort(addr), Err: err}
}

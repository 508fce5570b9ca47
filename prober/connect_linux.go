package prober

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
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
	fd, sa, done, err := startConnect(addr)
	if err != nil {
		return err
	}
	if done {
		resetClose(fd)
		return nil
	}
	f, rc, err := awaitConnect(ctx, fd, sa, addr)
	if err != nil {
		return err
	}
	// A reset rather than a FIN, as abort does: neither side keeps the socket in TIME_WAIT.
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	})
	_ = f.Close()
	return nil
}

// startConnect opens a non-blocking socket for addr (not scoped) and starts its connect; done
// reports that the connect completed at once.
func startConnect(addr netip.AddrPort) (fd int, sa unix.Sockaddr, done bool, err error) {
	ip := addr.Addr().Unmap()
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, nil, false, dialError(addr, os.NewSyscallError("socket", err))
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		return fd, sa, true, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return fd, sa, false, nil
	default:
		_ = unix.Close(fd)
		return -1, nil, false, dialError(addr, os.NewSyscallError("connect", err))
	}
}

// awaitConnect waits within ctx for the connect startConnect began on fd and returns the
// connected socket as a file on the runtime's poller; on failure it has closed fd.
func awaitConnect(ctx context.Context, fd int, sa unix.Sockaddr, addr netip.AddrPort) (*os.File, syscall.RawConn, error) {
	// Wait for the connect on the runtime's poller, as net.Dialer does: os.NewFile registers a
	// non-blocking descriptor with it, and its Close deregisters and closes it.
	f := os.NewFile(uintptr(fd), "")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, nil, dialError(addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(dl); err != nil {
			_ = f.Close()
			return nil, nil, dialError(addr, err)
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
	if cerr == nil {
		cerr = werr
	}
	if cerr != nil {
		_ = f.Close()
		return nil, nil, dialError(addr, cerr)
	}
	return f, rc, nil
}

// resetClose closes a connected socket with a reset.
func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	_ = unix.Close(fd)
}

// dialError wraps err as net.Dialer's DialTCP reports a failed dial to addr from the wildcard
// address: "dial tcp :0->127.0.0.1:1: connect: connection refused".
func dialError(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Source: &net.TCPAddr{}, Addr: net.TCPAddrFromAddrPort(addr), Err: err}
}

// dialHTTP connects to addr for a hand-made HTTP exchange (handHTTP): the hand connect, the
// socket kept on the runtime's poller. A scoped address never gets here.
func dialHTTP(ctx context.Context, addr netip.AddrPort) (httpConn, error) {
	fd, sa, done, err := startConnect(addr)
	if err != nil {
		return nil, err
	}
	if done {
		return &fileConn{f: os.NewFile(uintptr(fd), ""), addr: addr}, nil
	}
	f, _, err := awaitConnect(ctx, fd, sa, addr)
	if err != nil {
		return nil, err
	}
	return &fileConn{f: f, addr: addr}, nil
}

// fileConn is a connected TCP socket held as an *os.File, whose errors it reports as a
// *net.TCPConn would: "read tcp 127.0.0.1:40000->127.0.0.1:80: read: connection reset by
// peer", io.EOF as it is.
type fileConn struct {
	f    *os.File
	addr netip.AddrPort
}

func (c *fileConn) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	return n, c.netError("read", err)
}

func (c *fileConn) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	return n, c.netError("write", err)
}

func (c *fileConn) SetDeadline(t time.Time) error { return c.f.SetDeadline(t) }

func (c *fileConn) Close() error { return c.f.Close() }

func (c *fileConn) netError(op string, err error) error {
	var pe *os.PathError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	inner := pe.Err
	if errno, ok := inner.(syscall.Errno); ok {
		inner = os.NewSyscallError(op, errno)
	}
	var local net.Addr
	if rc, err := c.f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if sa, err := unix.Getsockname(int(fd)); err == nil {
				local = sockaddrTCP(sa)
			}
		})
	}
	return &net.OpError{Op: op, Net: "tcp", Source: local, Addr: net.TCPAddrFromAddrPort(c.addr), Err: inner}
}

// sockaddrTCP is sa as a *net.TCPAddr, or nil.
func sockaddrTCP(sa unix.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)))
	case *unix.SockaddrInet6:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)))
	}
	return nil
}

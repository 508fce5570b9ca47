package dnsupdater

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// listeners are the bound sockets of one server: one or more UDP sockets sharing one port
// (udpListenConfig), and one TCP listener on the same port.
type listeners struct {
	udp []*net.UDPConn
	tcp net.Listener
}

// listen binds n UDP sockets and a TCP listener on addr. Port 0 takes a free port: the TCP
// listener is bound first, so that no other socket can share the port the UDP sockets join.
func listen(addr string, n int) (*listeners, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("addr: want ip:port, got %q", addr)
	}
	if n < 1 {
		n = 1
	}
	cfg, err := udpListenConfig(n)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	plain := net.ListenConfig{}
	l := &listeners{}
	tl, err := plain.Listen(ctx, "tcp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("listen on tcp %s: %w", ap, err)
	}
	l.tcp = tl
	bound := netip.AddrPortFrom(ap.Addr(), uint16(l.tcp.Addr().(*net.TCPAddr).Port))
	for range n {
		pc, err := cfg.ListenPacket(ctx, "udp", bound.String())
		if err != nil {
			l.close()
			return nil, fmt.Errorf("listen on udp %s: %w", bound, err)
		}
		l.udp = append(l.udp, pc.(*net.UDPConn))
	}
	return l, nil
}

func (l *listeners) close() {
	for _, c := range l.udp {
		_ = c.Close()
	}
	if l.tcp != nil {
		_ = l.tcp.Close()
	}
}

// closedErr reports whether err comes from a socket closed at shutdown.
func closedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

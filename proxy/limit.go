package proxy

import (
	"net"
	"net/netip"
	"sync"
)

// Why a connection was refused, as the metrics and the log label it: the configuration keys.
const (
	limitMaxConns  = "max_conns"
	limitPerClient = "max_conns_per_client"
)

// connLimits counts the client connections an app's listener holds open, in all and per client,
// against the app's max_conns and max_conns_per_client, as the DNS server counts its TCP
// connections against dns.tcp_per_client.
type connLimits struct {
	mu      sync.Mutex
	open    int
	clients map[netip.Addr]int
}

// admit counts c, just accepted, against the app's limits and returns the function that frees
// its place, to be called when c is closed (once or more). Over a limit, it closes c at once,
// with a reset, before anything is read from it or an instance is dialled, and returns nil: an
// HTTP client is not answered 503, which would have the edge read a request (an HTTP/2
// preface and SETTINGS first) from a client already holding more than its share, for as long
// as client_header, and the reset leaves the edge no TIME_WAIT per connection refused. A
// connection from another edge counts towards max_conns only: it carries many clients.
func (a *app) admit(c net.Conn) (release func()) {
	client := connClient(c.RemoteAddr())
	perClient := !a.edge.forwardedByEdge(c.RemoteAddr())
	l := &a.conns
	var refused string
	limit := 0
	l.mu.Lock()
	switch {
	case perClient && l.clients[client] >= a.cfg.MaxConnsPerClient:
		refused, limit = limitPerClient, a.cfg.MaxConnsPerClient
	case l.open >= a.cfg.MaxConns:
		refused, limit = limitMaxConns, a.cfg.MaxConns
	default:
		l.open++
		if perClient {
			l.clients[client]++
		}
	}
	l.mu.Unlock()
	if refused != "" {
		_ = resetClose(c)
		a.metrics.refusedConn(refused)
		// Once per client and limit a while: a client over its limit opens connections in a loop.
		a.failures.Gate(a.log.Warn(), refused+" "+client.String()).Str("client", client.String()).Str("reason", refused).
			Int("limit", limit).Msg("connection refused: over a connection limit")
		return nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.open--
			if perClient {
				if l.clients[client]--; l.clients[client] == 0 {
					delete(l.clients, client)
				}
			}
			l.mu.Unlock()
		})
	}
}

// connClient is the client a connection from addr counts against for max_conns_per_client: the
// IPv4 address (also when it came as an IPv4-mapped IPv6 one), or the IPv6 /64, which one host
// is routinely given whole (SLAAC, privacy addresses), so that it cannot take every connection
// from addresses of its own.
func connClient(addr net.Addr) netip.Addr {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	a := ta.AddrPort().Addr().Unmap().WithZone("")
	if a.Is4() {
		return a
	}
	return netip.PrefixFrom(a, 64).Masked().Addr()
}

package proxy

import (
	"net"
	"net/netip"
	"sync"

	"github.com/detourdev/detour/events/config"
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

// edgeConns counts the client connections all the edge's listeners hold open against the edge's
// max_conns, as HAProxy's global maxconn, which bounds the descriptors a client flood can take
// however many apps the edge fronts.
type edgeConns struct {
	mu    sync.Mutex
	open  int
	limit int
	// freed, when a listener waits for a place, is closed once one frees or the limit changes.
	freed chan struct{}
}

// take counts one more connection as soon as the edge holds fewer than its limit, waiting
// until then or until stop is closed, and reports whether it counted one.
func (ec *edgeConns) take(stop <-chan struct{}) bool {
	for {
		ec.mu.Lock()
		if ec.open < ec.limit {
			ec.open++
			ec.mu.Unlock()
			return true
		}
		if ec.freed == nil {
			ec.freed = make(chan struct{})
		}
		freed := ec.freed
		ec.mu.Unlock()
		select {
		case <-freed:
		case <-stop:
			return false
		}
	}
}

// full reports whether the edge holds its limit of connections or more, and the limit.
func (ec *edgeConns) full() (bool, int) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	return ec.open >= ec.limit, ec.limit
}

// release frees the place of a connection take counted.
func (ec *edgeConns) release() {
	ec.mu.Lock()
	ec.open--
	ec.wake()
	ec.mu.Unlock()
}

// setLimit makes n the limit of new connections; those open stay, over it or not.
func (ec *edgeConns) setLimit(n int) {
	ec.mu.Lock()
	ec.limit = n
	ec.wake()
	ec.mu.Unlock()
}

// wake lets the listeners waiting for a place look again; ec.mu is held.
func (ec *edgeConns) wake() {
	if ec.freed != nil {
		close(ec.freed)
		ec.freed = nil
	}
}

// edgeMaxConns is an edge's max_conns: configured, when it is, or else half the descriptors
// the process may open (files, 0 when unknown) less a reserve for what is not a client's
// connection (NATS, listeners, idle connections to instances, the snapshot), as HAProxy
// derives its maxconn from its file limit; at most config.MaxEdgeConns. Where there is no
// file limit (Windows) it is derived as from Docker's, 1,048,576.
func edgeMaxConns(configured int, files uint64) int {
	if configured > 0 {
		return configured
	}
	if files == 0 {
		files = 1 << 20
	}
	reserve := min(files/4, 1024)
	return int(max(1, min((files-reserve)/2, config.MaxEdgeConns)))
}

// admit counts c, just accepted, against the edge's and the app's limits and returns the
// function that frees its place, to be called when c is closed (once or more). While the edge
// holds its max_conns it waits, c unread, until a connection of any of the edge's listeners
// closes, and the listener accepts nothing more meanwhile: the next connections wait in the
// kernel's backlog, at no descriptor's cost, as HAProxy's listeners pause at its global
// maxconn, and a burst, a prober's check or a peer's ping among them, is served late rather
// than refused. When stop is closed first, c is closed and admit returns nil. Over a limit
// of the app's, it closes c at once,
// with a reset, before anything is read from it or an instance is dialled, and returns nil: an
// HTTP client is not answered 503, which would have the edge read a request (an HTTP/2
// preface and SETTINGS first) from a client already holding more than its share, for as long
// as client_header, and the reset leaves the edge no TIME_WAIT per connection refused. A
// connection from another edge counts towards max_conns only: it carries many clients.
func (a *app) admit(stop <-chan struct{}, c net.Conn) (release func()) {
	ec := &a.edge.conns
	if full, limit := ec.full(); full {
		a.failures.Gate(a.log.Warn(), "edge max_conns").Int("limit", limit).
			Msg("accepting paused: the edge holds max_conns connections")
	}
	if !ec.take(stop) {
		_ = c.Close()
		return nil
	}
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
		ec.release()
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
			ec.release()
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

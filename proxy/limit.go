package proxy

import (
	"net"
	"net/netip"
	"sync"

	"github.com/detourdev/detour/events/config"
)

// limitPerClient is why a connection was refused, as the metrics and the log label it: the
// configuration key.
const limitPerClient = "max_conns_per_client"

// connLimits counts the client connections an app's listener holds open, in all against the
// app's max_conns and per client against its max_conns_per_client, as the DNS server counts its
// TCP connections against dns.tcp_per_client.
type connLimits struct {
	all     connGate
	mu      sync.Mutex
	clients map[netip.Addr]int
}

// connGate counts the connections open against a limit: an app listener's max_conns, or the
// edge's over all its listeners, as HAProxy's maxconn of a frontend and its global maxconn.
type connGate struct {
	mu    sync.Mutex
	open  int
	limit int
	// freed, when a listener waits for a place, is closed once one frees or the limit changes.
	freed chan struct{}
}

// take counts one more connection as soon as fewer than the limit are open, waiting until
// then or until stop is closed, and reports whether it counted one.
func (g *connGate) take(stop <-chan struct{}) bool {
	for {
		g.mu.Lock()
		if g.open < g.limit {
			g.open++
			g.mu.Unlock()
			return true
		}
		if g.freed == nil {
			g.freed = make(chan struct{})
		}
		freed := g.freed
		g.mu.Unlock()
		select {
		case <-freed:
		case <-stop:
			return false
		}
	}
}

// full reports whether the limit of connections or more are open, and the limit.
func (g *connGate) full() (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open >= g.limit, g.limit
}

// release frees the place of a connection take counted.
func (g *connGate) release() {
	g.mu.Lock()
	g.open--
	g.wake()
	g.mu.Unlock()
}

// setLimit makes n the limit of new connections; those open stay, over it or not.
func (g *connGate) setLimit(n int) {
	g.mu.Lock()
	g.limit = n
	g.wake()
	g.mu.Unlock()
}

// wake lets the listeners waiting for a place look again; g.mu is held.
func (g *connGate) wake() {
	if g.freed != nil {
		close(g.freed)
		g.freed = nil
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

// admit counts c, just accepted, against the app's and the edge's limits and returns the
// function that frees its place, to be called when c is closed (once or more).
//
// Over max_conns_per_client, it closes c at once, with a reset, before anything is read from it
// or an instance is dialled, and returns nil: an HTTP client is not answered 503, which would
// have the edge read a request (an HTTP/2 preface and SETTINGS first) from a client already
// holding more than its share, for as long as client_header, and the reset leaves the edge no
// TIME_WAIT per connection refused. A connection from another edge is not counted against it:
// it carries many clients.
//
// While the listener holds its max_conns, or the edge its own over all its listeners, admit
// waits, c unread, until one of those connections closes, and the listener accepts nothing
// more meanwhile: the next connections wait in the kernel's backlog, at no descriptor's cost,
// as HAProxy's listeners pause at a frontend's or the global maxconn, and a burst, a prober's
// check or a peer's ping among it, is served late rather than reset, which would have the edge
// reported down for a burst of milliseconds. When stop is closed first, c is closed and admit
// returns nil.
func (a *app) admit(stop <-chan struct{}, c net.Conn) (release func()) {
	client := connClient(c.RemoteAddr())
	perClient := !a.edge.forwardedByEdge(c.RemoteAddr())
	l := &a.conns
	// Only this listener's accept loop adds to l.clients: a count seen under the limit stays
	// under it while admit waits.
	l.mu.Lock()
	over := perClient && l.clients[client] >= a.cfg.MaxConnsPerClient
	l.mu.Unlock()
	if over {
		_ = resetClose(c)
		a.metrics.refusedConn()
		// Once per client a while: a client over its limit opens connections in a loop.
		a.failures.Gate(a.log.Warn(), limitPerClient+" "+client.String()).Str("client", client.String()).Str("reason", limitPerClient).
			Int("limit", a.cfg.MaxConnsPerClient).Msg("connection refused: over a connection limit")
		return nil
	}
	ec := &a.edge.conns
	for _, g := range []struct {
		gate *connGate
		key  string
	}{{&l.all, "listener"}, {ec, "edge"}} {
		if full, limit := g.gate.full(); full {
			a.failures.Gate(a.log.Warn(), g.key+" max_conns").Str("limit_of", g.key).Int("limit", limit).
				Msg("accepting paused: max_conns connections open")
		}
		if !g.gate.take(stop) {
			if g.gate == ec {
				l.all.release()
			}
			_ = c.Close()
			return nil
		}
	}
	if perClient {
		l.mu.Lock()
		l.clients[client]++
		l.mu.Unlock()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if perClient {
				l.mu.Lock()
				if l.clients[client]--; l.clients[client] == 0 {
					delete(l.clients, client)
				}
				l.mu.Unlock()
			}
			l.all.release()
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

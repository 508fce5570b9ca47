package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure one edge process.
type Options struct {
	// JS is the JetStream handle the edge watches its route table with and heartbeats through.
	JS jetstream.JetStream
	// Config is the validated configuration; the edge binds the listeners of its entry.
	Config *config.Config
	// Edge names the configured edge this process is.
	Edge string
	// Resolver is the host:port of the DNS server that resolves peer edge hostnames. Default: the
	// system resolver.
	Resolver string
	// Log receives the edge's logs.
	Log zerolog.Logger
	// Metrics, when set, counts requests, upstream latency, retries and secondary forwards.
	Metrics *metrics.Metrics
	// DataDir keeps the last route table applied, served at start until NATS answers; "" keeps
	// none.
	DataDir string
	// Configs delivers new configuration versions: the edge opens, closes and reopens its
	// listeners as its entry says. Optional.
	Configs <-chan *config.Config
}

// Timings of the edge itself; those of its traffic are each app's policy (policy.go).
const (
	// peerTimeout bounds a heartbeat of a secondary edge.
	peerTimeout = time.Second
	// shutdownGrace is how long in-flight requests may finish once the edge is stopped.
	shutdownGrace = 5 * time.Second
)

// edge is one running edge process.
type edge struct {
	name      string
	cfg       *config.Edge
	log       zerolog.Logger
	mu        sync.RWMutex
	apps      map[string]*app // guarded by mu, as order and routes
	order     []*app
	routes    map[string]events.AppRoute // the last route applied per app, from ROUTES or the snapshot
	peers     *peers
	others    map[netip.Addr]bool // addresses of the other configured edges
	names     map[string]bool     // names of the configured edges, this one's included
	source    net.IP              // this edge's address, the source of connections to peers
	dataDir   string
	malformed events.Malformed // route tables that could not be applied
	metrics   *metrics.Metrics
	// intervals carries a new heartbeat interval from the configuration to the heartbeat loop.
	intervals chan time.Duration
	// conns counts the client connections of all the edge's listeners (see app.admit).
	conns connGate
}

// Run binds the listeners of the edge named o.Edge and serves them until ctx is cancelled, when
// it stops accepting, lets in-flight requests finish for a few seconds and returns nil. It
// returns an error when the edge is not configured or a listener cannot be bound.
func Run(ctx context.Context, o Options) error {
	e, err := newEdge(o)
	if err != nil {
		return err
	}
	servers, err := e.bind()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 1)
	failed := func(err error) {
		select {
		case errs <- err:
		default:
		}
		cancel()
	}
	var wg sync.WaitGroup
	running := map[string]*listener{}
	for i, s := range servers {
		running[e.order[i].name] = e.serveApp(ctx, e.order[i], s, failed)
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				for _, l := range running {
					l.stop()
				}
				return
			case c := <-o.Configs:
				if err := e.reconfigure(ctx, c, running, failed); err != nil {
					if o.JS == nil {
						e.log.Error().Err(err).Uint64("version", c.Version).Msg("configuration version not applied")
					} else {
						config.Reject(ctx, o.JS, c.Version, err, e.log, "edge", e.name)
					}
				}
			}
		}
	})
	wg.Go(func() { e.watchRoutes(ctx, o.JS) })
	wg.Go(func() { e.heartbeat(ctx, o.JS) })
	wg.Go(func() { e.peers.run(ctx) })
	_, limit := e.conns.full()
	e.log.Info().Int("apps", len(servers)).Int("max_conns", limit).Msg("edge serving")
	<-ctx.Done()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		e.log.Info().Msg("edge stopped")
		return nil
	}
}

func newEdge(o Options) (*edge, error) {
	if o.Config == nil {
		return nil, errors.New("run edge: no configuration")
	}
	if o.JS == nil {
		return nil, errors.New("run edge: no JetStream client")
	}
	ce := o.Config.Edge(o.Edge)
	if ce == nil {
		return nil, fmt.Errorf("run edge: no edge %q in the configuration", o.Edge)
	}
	log := o.Log.With().Str("component", "edge").Str("edge", ce.Name).Logger()
	initial, err := route.Compute(o.Config, state.NewView(), ce.Name, "")
	if err != nil {
		return nil, fmt.Errorf("run edge %s: %w", ce.Name, err)
	}
	e := &edge{name: ce.Name, cfg: ce, log: log, apps: map[string]*app{}, routes: map[string]events.AppRoute{}, others: map[netip.Addr]bool{}, names: map[string]bool{}, dataDir: o.DataDir, metrics: o.Metrics,
		intervals: make(chan time.Duration, 1)}
	e.conns.setLimit(edgeMaxConns(ce.MaxConns, fileLimit()))
	e.peers = newPeers(ce.Name, o.Resolver, ce.Heartbeat.Interval.D(), log)
	e.peers.inUse = e.secondaries
	if a, err := netip.ParseAddr(ce.Address); err == nil {
		e.source = net.IP(a.AsSlice())
		e.peers.source = e.source
	}
	for _, other := range o.Config.Edges {
		e.names[other.Name] = true
		if a, err := netip.ParseAddr(other.Address); err == nil && other.Name != ce.Name {
			e.others[a.Unmap()] = true
		}
	}
	for i, ea := range ce.Apps {
		a := newApp(e, ea)
		a.metrics = newAppMetrics(o.Metrics, ce.Name, ea.App)
		a.setRoute(initial.Apps[i])
		e.apps[ea.App] = a
		e.order = append(e.order, a)
	}
	e.loadTable()
	return e, nil
}

// server is one bound listener.
type server interface {
	serve(ctx context.Context) error
}

// bind opens every listener of the edge, or none; the servers are in the order of e.order.
func (e *edge) bind() ([]server, error) {
	var out []server
	var opened []net.Listener
	for _, a := range e.order {
		ln, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			for _, l := range opened {
				_ = l.Close()
			}
			return nil, fmt.Errorf("run edge %s: listen for app %s on %s: %w", e.name, a.name, a.cfg.Listen, err)
		}
		opened = append(opened, ln)
		out = append(out, newServer(a, ln))
	}
	return out, nil
}

// secondaries returns the peers the routes of the edge's apps name now.
func (e *edge) secondaries() map[*peer]bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[*peer]bool, len(e.apps))
	for _, a := range e.apps {
		if r := a.route.Load(); r != nil && r.secondary != nil {
			out[r.secondary] = true
		}
	}
	return out
}

// forwardedByEdge reports whether a connection from remote comes from another configured edge.
func (e *edge) forwardedByEdge(remote net.Addr) bool {
	ap, err := netip.ParseAddrPort(remote.String())
	return err == nil && e.others[ap.Addr().Unmap()]
}

// dialFrom returns a dial function that connects from source when it is set and assigned to
// this host, and from any address otherwise, within timeout.
func dialFrom(source net.IP, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	plain := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if source == nil {
		return plain.DialContext
	}
	bound := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: source}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ap, err := netip.ParseAddrPort(addr); err != nil || ap.Addr().Unmap().Is4() != (source.To4() != nil) {
			return plain.DialContext(ctx, network, addr)
		}
		c, err := bound.DialContext(ctx, network, addr)
		if err != nil && errors.Is(err, syscall.EADDRNOTAVAIL) {
			return plain.DialContext(ctx, network, addr)
		}
		return c, err
	}
}

// httpErrorLog routes net/http's own error log (malformed requests, aborted connections) into
// the edge's log at debug level: they are the clients' problems, not the edge's.
type httpErrorLog struct{ log zerolog.Logger }

func (d httpErrorLog) Write(p []byte) (int, error) {
	d.log.Debug().Str("error", string(p)).Msg("http server error")
	return len(p), nil
}

var _ http.RoundTripper = (*app)(nil)

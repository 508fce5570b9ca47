package proxy

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/proxy/route"
	"github.com/rs/zerolog"
)

// app is the runtime of one app behind the edge: its current route, its place in the rotation,
// the instances ejected after connection errors, and its secondary edge.
type app struct {
	edge    *edge
	name    string
	cfg     config.EdgeApp
	log     zerolog.Logger
	route   atomic.Pointer[appRoute]
	turn    atomic.Uint64
	ejected sync.Map // instance address -> time.Time it is skipped until
	now     func() time.Time
	// transport reaches local instances, peerTransport secondary edges (HTTP mode only).
	transport, peerTransport *http.Transport
	// pool and peerPool hold the fast path's connections to instances and to secondary edges.
	pool, peerPool *connPool
	// metrics, when set, counts the app's requests.
	metrics *appMetrics
}

// appRoute is a route with what requests derive from it, computed once per table.
type appRoute struct {
	events.AppRoute
	secondary *peer
	retry     map[string]bool
}

func newApp(e *edge, ea config.EdgeApp) *app {
	return &app{
		edge: e, name: ea.App, cfg: ea, now: time.Now,
		log: e.log.With().Str("app", ea.App).Str("mode", ea.Mode).Logger(),
	}
}

// setRoute makes r the app's route from the next request on; requests in flight finish on the
// route they started with.
func (a *app) setRoute(r events.AppRoute) {
	ar := &appRoute{AppRoute: r, retry: map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true}}
	for _, m := range r.RetryMethods {
		ar.retry[strings.ToUpper(m)] = true
	}
	for _, m := range a.cfg.RetryMethods {
		ar.retry[strings.ToUpper(m)] = true
	}
	if s := r.Secondary; s != nil {
		ar.secondary = a.edge.peers.get(s.Hostname, s.Address, s.Port, a.cfg.Mode)
	}
	prev := a.route.Swap(ar)
	if prev == nil {
		return
	}
	if prev.Available != r.Available {
		ev := a.log.Info().Str("pool", r.Pool).Bool("available", r.Available)
		if r.Secondary != nil {
			ev = ev.Str("secondary", r.Secondary.Edge)
		}
		ev.Msg("local pool availability changed")
	}
	for _, ep := range r.Endpoints {
		i := slices.IndexFunc(prev.Endpoints, func(p events.RouteEndpoint) bool { return p.Address == ep.Address })
		if i >= 0 && prev.Endpoints[i].Status != ep.Status && ep.Serving() {
			// The decider saw it recover: stop skipping it now rather than when the ejection ends.
			a.ejected.Delete(ep.Address)
		}
	}
}

// plan returns the targets of one request or connection.
func (a *app) plan(r *appRoute, forwarded bool) []route.Target {
	c := route.Choice{Turn: a.turn.Add(1) - 1, Skip: a.skip, Forwarded: forwarded}
	if r.secondary != nil {
		c.SecondaryAddr = r.secondary.dialAddr()
		c.SecondaryAlive = r.secondary.alive.Load()
	}
	return route.Plan(&r.AppRoute, c)
}

func (a *app) skip(addr string) bool {
	until, ok := a.ejected.Load(addr)
	return ok && a.now().Before(until.(time.Time))
}

// failed records a connection error to t: a local instance is skipped for a while, a secondary
// is not used again until its heartbeat answers.
func (a *app) failed(r *appRoute, t route.Target, err error) {
	if t.Secondary {
		if r.secondary != nil && r.secondary.alive.Swap(false) {
			a.log.Warn().Str("secondary", r.Secondary.Edge).Str("address", t.Addr).Err(err).Msg("secondary edge unreachable")
		}
		return
	}
	now := a.now()
	if prev, loaded := a.ejected.Swap(t.Addr, now.Add(ejectFor)); !loaded || !now.Before(prev.(time.Time)) {
		a.log.Warn().Str("endpoint", t.Endpoint).Str("address", t.Addr).Err(err).Msg("instance ejected after connection error")
	}
}

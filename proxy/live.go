package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
)

// listener is one app's bound listener being served.
type listener struct {
	app    *app
	cancel context.CancelFunc
	done   chan struct{}
}

// stop closes the listener and waits until its in-flight requests finished (at most
// shutdownGrace).
func (l *listener) stop() {
	l.cancel()
	<-l.done
}

// serveApp serves s for a until ctx ends or the listener is stopped; a serve error goes to
// failed.
func (e *edge) serveApp(ctx context.Context, a *app, s server, failed func(error)) *listener {
	ctx, cancel := context.WithCancel(ctx)
	l := &listener{app: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		if err := s.serve(ctx); err != nil {
			failed(err)
		}
	}()
	return l
}

// newServer is the server of app a on ln.
func newServer(a *app, ln net.Listener) server {
	if a.cfg.Mode == config.ModeTCP {
		return &tcpServer{app: a, ln: ln}
	}
	return newHTTPServer(a, ln)
}

// reconfigure applies c's entry of this edge: listeners of removed apps close, those whose
// entry changed (listen address, mode, secondary, policy) close and open again with it, new
// ones open; unchanged ones serve on untouched, in-flight requests and all; the heartbeat
// interval applies at once, to the edge's heartbeats and to its pings of its secondaries.
// running is updated. It returns why c could not be applied: the edge is not in it (nothing
// changes then), or a listener could not be bound (the others are applied; that app is not
// served until a version that binds).
func (e *edge) reconfigure(ctx context.Context, c *config.Config, running map[string]*listener, failed func(error)) error {
	ce := c.Edge(e.name)
	if ce == nil {
		return fmt.Errorf("edges: no edge %q in version %d; its listeners are kept", e.name, c.Version)
	}
	initial, err := route.Compute(c, state.NewView(), e.name, "")
	if err != nil {
		return fmt.Errorf("edges[%s]: %w; the last good configuration is kept", e.name, err)
	}
	e.setInterval(ce.Heartbeat.Interval.D())
	e.peers.setInterval(ce.Heartbeat.Interval.D())
	e.conns.setLimit(edgeMaxConns(ce.MaxConns, fileLimit()))
	var unbound []error
	var removed, changed, added int
	for name, l := range running {
		i := slices.IndexFunc(ce.Apps, func(ea config.EdgeApp) bool { return ea.App == name })
		if i >= 0 && reflect.DeepEqual(ce.Apps[i], l.app.cfg) {
			continue
		}
		l.stop()
		delete(running, name)
		if i < 0 {
			removed++
			e.log.Info().Str("app", name).Str("listen", l.app.cfg.Listen).Msg("edge listener closed")
		}
	}
	var order []*app
	for i, ea := range ce.Apps {
		if l := running[ea.App]; l != nil {
			order = append(order, l.app)
			continue
		}
		a := newApp(e, ea)
		a.metrics = newAppMetrics(e.metrics, e.name, ea.App)
		// The app's last route, when it has one, before the listener accepts a request: the
		// configuration alone knows nothing of the instances the decider marked down. A route
		// applied meanwhile is applied again below.
		r := initial.Apps[i]
		e.mu.RLock()
		if last, ok := e.routes[ea.App]; ok {
			r = last
		}
		e.mu.RUnlock()
		a.setRoute(r)
		ln, err := net.Listen("tcp", ea.Listen)
		if err != nil {
			unbound = append(unbound, fmt.Errorf("edges[%s].apps[%d].listen: %w", e.name, i, err))
			continue
		}
		running[ea.App] = e.serveApp(ctx, a, newServer(a, ln), failed)
		order = append(order, a)
		if _, had := e.app(ea.App); had {
			changed++
		} else {
			added++
		}
		e.log.Info().Str("app", ea.App).Str("listen", ea.Listen).Str("mode", ea.Mode).Str("secondary", ea.Secondary).Msg("edge listener opened")
	}
	e.mu.Lock()
	e.order, e.apps = order, map[string]*app{}
	for _, a := range order {
		e.apps[a.name] = a
		if r, ok := e.routes[a.name]; ok {
			a.setRoute(r) // the app's last route, until the controller computes the next one
		}
	}
	e.mu.Unlock()
	e.log.Info().Int("apps", len(order)).Int("added", added).Int("changed", changed).Int("removed", removed).Msg("edge configuration applied")
	return errors.Join(unbound...)
}

// app returns the app named name the edge serves.
func (e *edge) app(name string) (*app, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	a, ok := e.apps[name]
	return a, ok
}

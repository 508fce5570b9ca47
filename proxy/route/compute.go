package route

import (
	"fmt"
	"net/netip"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
)

// Compute projects c and v into the route table of the edge named edge. An endpoint's override
// wins over its decided status, as it does in DNS answers. configSHA names the document c was
// parsed from ("" when unknown).
func Compute(c *config.Config, v *state.View, edge, configSHA string) (events.RouteTable, error) {
	e := c.Edge(edge)
	if e == nil {
		return events.RouteTable{}, fmt.Errorf("compute routes: no edge %q in the configuration", edge)
	}
	t := events.RouteTable{Edge: e.Name, ConfigSHA256: configSHA, StateSeq: v.LastSeq(), Apps: make([]events.AppRoute, 0, len(e.Apps))}
	for _, ea := range e.Apps {
		r, err := App(c, v, ea)
		if err != nil {
			return events.RouteTable{}, fmt.Errorf("compute routes of edge %s: %w", edge, err)
		}
		t.Apps = append(t.Apps, r)
	}
	return t, nil
}

// App projects c and v into the route of one app an edge fronts (ea, an entry of the edge's
// apps): what Compute puts in the edge's table for it. A caller that knows which apps changed
// computes only theirs.
func App(c *config.Config, v *state.View, ea config.EdgeApp) (events.AppRoute, error) {
	a := c.App(ea.App) // indexed: an edge may front thousands of apps
	if a == nil {
		return events.AppRoute{}, fmt.Errorf("no app %q", ea.App)
	}
	p := a.Pool(ea.Pool)
	if p == nil {
		return events.AppRoute{}, fmt.Errorf("no pool %q in app %q", ea.Pool, ea.App)
	}
	r := events.AppRoute{App: a.Name, Pool: p.Name, Endpoints: make([]events.RouteEndpoint, 0, len(p.Endpoints))}
	serving := 0
	for _, ep := range p.Endpoints {
		re := events.RouteEndpoint{Name: ep.Name, Address: ep.Address, Status: status(v, a.Name, p.Name, ep.Name), Weight: 1}
		if ep.Weight != nil {
			re.Weight = *ep.Weight
		}
		if re.Serving() {
			serving++
		}
		r.Endpoints = append(r.Endpoints, re)
	}
	r.Available = serving > 0 && serving >= p.MinAvailable.Need(len(p.Endpoints))
	if ea.Secondary != "" {
		s, err := secondary(c, v, ea)
		if err != nil {
			return events.AppRoute{}, err
		}
		r.Secondary = s
	}
	r.RetryMethods = append([]string(nil), ea.RetryMethods...)
	return r, nil
}

// status is an endpoint's effective status: its override's if one is in force, else the decided one.
func status(v *state.View, app, pool, endpoint string) events.Status {
	if o, ok := v.Override(app, pool, endpoint); ok {
		switch o.Action {
		case events.ActionForceUp:
			return events.StatusUp
		case events.ActionForceDown:
			return events.StatusDown
		case events.ActionDrain:
			return events.StatusDrained
		}
	}
	return v.Endpoint(app, pool, endpoint)
}

func secondary(c *config.Config, v *state.View, ea config.EdgeApp) (*events.SecondaryRoute, error) {
	se := c.Edge(ea.Secondary)
	if se == nil {
		return nil, fmt.Errorf("app %s: no secondary edge %q", ea.App, ea.Secondary)
	}
	sa := c.EdgeApp(se.Name, ea.App)
	if sa == nil {
		return nil, fmt.Errorf("app %s: secondary edge %s does not front it", ea.App, se.Name)
	}
	ap, err := netip.ParseAddrPort(sa.Listen)
	if err != nil {
		return nil, fmt.Errorf("app %s: secondary edge %s listens on %q: %w", ea.App, se.Name, sa.Listen, err)
	}
	return &events.SecondaryRoute{
		Edge: se.Name, Hostname: se.Hostname, Address: se.Address, Port: int(ap.Port()),
		Status: v.Edge(se.Name),
	}, nil
}

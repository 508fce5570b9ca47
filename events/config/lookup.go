package config

import "net/netip"

// names indexes a configuration's apps and edges by name, and the edges fronting each app, so
// that lookups in a configuration of 100,000 endpoints do not scan it.
type names struct {
	apps, edges map[string]int
	// edgeApps[i] indexes the apps of c.Edges[i].
	edgeApps []map[string]int
	// frontedBy lists, per app, the indexes of the edges that front it.
	frontedBy map[string][]int
	// poolRegions is what Config.poolRegions returns: every probe result asks for it.
	poolRegions []string
}

func newNames(c *Config) *names {
	n := &names{apps: make(map[string]int, len(c.Apps)), edges: make(map[string]int, len(c.Edges)),
		edgeApps: make([]map[string]int, len(c.Edges)), frontedBy: map[string][]int{}}
	for i := range c.Apps {
		if _, dup := n.apps[c.Apps[i].Name]; !dup {
			n.apps[c.Apps[i].Name] = i
		}
	}
	for i := range c.Edges {
		e := &c.Edges[i]
		if _, dup := n.edges[e.Name]; !dup {
			n.edges[e.Name] = i
		}
		n.edgeApps[i] = make(map[string]int, len(e.Apps))
		for j := range e.Apps {
			if _, dup := n.edgeApps[i][e.Apps[j].App]; !dup {
				n.edgeApps[i][e.Apps[j].App] = j
				n.frontedBy[e.Apps[j].App] = append(n.frontedBy[e.Apps[j].App], i)
			}
		}
	}
	n.poolRegions = c.scanPoolRegions()
	return n
}

// app is the app named name in c, which n indexes, or nil.
func (n *names) app(c *Config, name string) *App {
	if i, ok := n.apps[name]; ok {
		return &c.Apps[i]
	}
	return nil
}

// edge is the edge named name in c, which n indexes, or nil.
func (n *names) edge(c *Config, name string) *Edge {
	if i, ok := n.edges[name]; ok {
		return &c.Edges[i]
	}
	return nil
}

// fronts reports whether the edge named edge fronts app.
func (n *names) fronts(edge, app string) bool {
	i, ok := n.edges[edge]
	if !ok {
		return false
	}
	_, ok = n.edgeApps[i][app]
	return ok
}

// App returns the app named name, or nil.
func (c *Config) App(name string) *App {
	// The index is built by ApplyDefaults; a configuration changed since (or built by hand)
	// is scanned.
	if n := c.names; n != nil {
		if i, ok := n.apps[name]; ok && i < len(c.Apps) && c.Apps[i].Name == name {
			return &c.Apps[i]
		}
	}
	for i := range c.Apps {
		if c.Apps[i].Name == name {
			return &c.Apps[i]
		}
	}
	return nil
}

// Edge returns the edge named name, or nil.
func (c *Config) Edge(name string) *Edge {
	if n := c.names; n != nil {
		if i, ok := n.edges[name]; ok && i < len(c.Edges) && c.Edges[i].Name == name {
			return &c.Edges[i]
		}
	}
	for i := range c.Edges {
		if c.Edges[i].Name == name {
			return &c.Edges[i]
		}
	}
	return nil
}

// EdgeApp returns the entry for the app named app of the edge named edge, or nil.
func (c *Config) EdgeApp(edge, app string) *EdgeApp {
	e := c.Edge(edge)
	if e == nil {
		return nil
	}
	if n := c.names; n != nil && len(n.edgeApps) == len(c.Edges) {
		if j, ok := n.edgeApps[n.edges[edge]][app]; ok && j < len(e.Apps) && e.Apps[j].App == app {
			return &e.Apps[j]
		}
	}
	return e.App(app)
}

// Fronting returns the edges that front the app named app, in configuration order.
func (c *Config) Fronting(app string) []*Edge {
	var out []*Edge
	if n := c.names; n != nil && len(n.edgeApps) == len(c.Edges) {
		for _, i := range n.frontedBy[app] {
			out = append(out, &c.Edges[i])
		}
		return out
	}
	for i := range c.Edges {
		if c.Edges[i].App(app) != nil {
			out = append(out, &c.Edges[i])
		}
	}
	return out
}

// ZoneOf returns the most specific zone that contains the canonical name, or nil.
func (c *Config) ZoneOf(name string) *Zone {
	var best *Zone
	for i := range c.Zones {
		z := &c.Zones[i]
		if InZone(name, z.Name) && (best == nil || len(z.Name) > len(best.Name)) {
			best = z
		}
	}
	return best
}

// InZone reports whether the canonical name is zone or lies below it. The name may be a zone
// record's, in presentation form, whose labels may hold escaped dots: "a\.demo.test." is the
// label "a.demo" below test., not a name below demo.test.
func InZone(name, zone string) bool {
	if name == zone {
		return true
	}
	dot := len(name) - len(zone) - 1
	if dot < 0 || name[dot] != '.' || name[dot+1:] != zone {
		return false
	}
	// The dot ends a label unless it is escaped: after an odd run of backslashes.
	escaped := false
	for i := dot - 1; i >= 0 && name[i] == '\\'; i-- {
		escaped = !escaped
	}
	return !escaped
}

// Pool returns the app's pool named name, or nil.
func (a *App) Pool(name string) *Pool {
	for i := range a.Pools {
		if a.Pools[i].Name == name {
			return &a.Pools[i]
		}
	}
	return nil
}

// Endpoint returns the pool's endpoint named name, or nil.
func (p *Pool) Endpoint(name string) *Endpoint {
	for i := range p.Endpoints {
		if p.Endpoints[i].Name == name {
			return &p.Endpoints[i]
		}
	}
	return nil
}

// AddrPort returns the endpoint's address, with port 0 when it is a bare IP; it is valid in a
// validated configuration.
func (e *Endpoint) AddrPort() netip.AddrPort {
	if ap, err := netip.ParseAddrPort(e.Address); err == nil {
		return ap
	}
	a, _ := netip.ParseAddr(e.Address)
	return netip.AddrPortFrom(a, 0)
}

// App returns the edge's entry for the app named name, or nil.
func (e *Edge) App(name string) *EdgeApp {
	for i := range e.Apps {
		if e.Apps[i].App == name {
			return &e.Apps[i]
		}
	}
	return nil
}

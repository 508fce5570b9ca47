package config

import (
	"net/netip"
	"strings"
)

// App returns the app named name, or nil.
func (c *Config) App(name string) *App {
	for i := range c.Apps {
		if c.Apps[i].Name == name {
			return &c.Apps[i]
		}
	}
	return nil
}

// Edge returns the edge named name, or nil.
func (c *Config) Edge(name string) *Edge {
	for i := range c.Edges {
		if c.Edges[i].Name == name {
			return &c.Edges[i]
		}
	}
	return nil
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

// InZone reports whether the canonical name is zone or lies below it.
func InZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
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

func (e *Edge) fronts(app string) bool { return e.App(app) != nil }

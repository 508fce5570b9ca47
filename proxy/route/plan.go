package route

import "github.com/detourdev/detour/events"

// Target is one place a request or connection of an app can go.
type Target struct {
	// Addr is the ip:port to dial.
	Addr string
	// Endpoint names the local instance; "" for the secondary edge.
	Endpoint string
	// Secondary marks the secondary edge.
	Secondary bool
}

// Choice holds what a plan depends on besides the route.
type Choice struct {
	// Turn spreads requests over the instances: the caller passes a counter it increments.
	Turn uint64
	// Skip reports whether a local instance was ejected after a recent connection error.
	Skip func(addr string) bool
	// SecondaryAddr is the resolved ip:port of the secondary edge; "" when there is none.
	SecondaryAddr string
	// SecondaryAlive is what the edge's own heartbeat of its secondary last saw.
	SecondaryAlive bool
	// Forwarded marks a request another edge already forwarded: it never goes to a secondary.
	Forwarded bool
}

// Plan returns the targets to try for one request, best first. While the local pool is
// available its serving instances come first, rotated by weight, then the secondary edge as the
// target of a retry. When the pool is down, or every serving instance is skipped (failed
// recently, see Choice.Skip), the secondary comes first. A secondary is used only while this
// edge's own heartbeat reaches it; one the controller recorded down but that still answers it
// is trusted less, not dropped: it never goes ahead of a healthy local instance, and when it
// comes first the instances follow it even if none is serving. With no secondary to use and no
// serving instance, every instance is returned (fail open): the decider may be wrong, and a
// refused connection is no worse than a 502. For the same reason a secondary the heartbeat lost
// is the last target, the last resort (it may have come up since the last ping). The plan is
// empty only for a pool without instances and without a resolved secondary, or for a
// forwarded request to a pool without instances.
func Plan(r *events.AppRoute, c Choice) []Target {
	var sb, hb [8]int // room for the usual few endpoints without allocating
	serving, healthy := sb[:0], hb[:0]
	for i, e := range r.Endpoints {
		if !e.Serving() || e.Weight <= 0 {
			continue
		}
		serving = append(serving, i)
		if c.Skip == nil || !c.Skip(e.Address) {
			healthy = append(healthy, i)
		}
	}
	local := healthy
	if len(local) == 0 {
		local = serving
	}
	s := r.Secondary
	usable := s != nil && !c.Forwarded && c.SecondaryAddr != "" && c.SecondaryAlive
	trusted := usable && s.Status != events.StatusDown
	if len(local) == 0 && !trusted {
		local = make([]int, 0, len(r.Endpoints))
		for i, e := range r.Endpoints {
			if e.Weight > 0 {
				local = append(local, i)
			}
		}
	}
	out := make([]Target, 0, len(local)+1)
	secFirst := usable && (len(healthy) == 0 || !r.Available && trusted)
	if secFirst {
		out = append(out, Target{Addr: c.SecondaryAddr, Secondary: true})
	}
	out = appendRotated(out, r.Endpoints, local, c.Turn)
	if usable && !secFirst || s != nil && !c.Forwarded && c.SecondaryAddr != "" && !c.SecondaryAlive {
		out = append(out, Target{Addr: c.SecondaryAddr, Secondary: true})
	}
	return out
}

// appendRotated appends the endpoints at idx starting with the one turn falls on when each
// endpoint owns a share of the turns equal to its weight.
func appendRotated(out []Target, eps []events.RouteEndpoint, idx []int, turn uint64) []Target {
	if len(idx) == 0 {
		return out
	}
	var total uint64
	for _, i := range idx {
		total += uint64(eps[i].Weight)
	}
	t, start := turn%total, 0
	for k, i := range idx {
		w := uint64(eps[i].Weight)
		if t < w {
			start = k
			break
		}
		t -= w
	}
	for k := range idx {
		e := eps[idx[(start+k)%len(idx)]]
		out = append(out, Target{Addr: e.Address, Endpoint: e.Name})
	}
	return out
}

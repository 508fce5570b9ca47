package events

import (
	"fmt"
	"net/netip"
	"strconv"
)

const (
	// TypeRouteComputed carries an EdgeRoute: how one edge routes one app, computed by the
	// controller from CONFIG and STATE and published on AppRouteSubject(edge, app).
	TypeRouteComputed = "detour.route.computed.v1"
	// TypeRoutesComputed carries a RouteTable: every route of one edge in one message, as the
	// controller published them on RoutesSubject(edge) before an edge of thousands of apps
	// outgrew NATS's max_payload; history holds them, and an edge's snapshot is one.
	TypeRoutesComputed = "detour.routes.computed.v1"
)

// EdgeRoute is how one edge routes one app. Each is complete: an edge replaces the route it
// holds for the app with the newest it receives, and no other app's.
type EdgeRoute struct {
	// Edge names the edge the route is for.
	Edge string `json:"edge"`
	// ConfigSHA256 is the digest of the configuration document the route was computed from
	// ("" when the configuration was given to the controller directly).
	ConfigSHA256 string `json:"config_sha256,omitempty"`
	// StateSeq is the last STATE stream sequence folded into the route.
	StateSeq uint64 `json:"state_seq"`
	// Route is the app's route.
	Route AppRoute `json:"route"`
	// RefreshOf is, when not 0, the ROUTES sequence of the copy of this route that it repeats:
	// the route did not change, and the controller stored it again so that ROUTES's byte bound,
	// which discards the oldest messages whatever their subject, never discards an app's only
	// route. An edge applies it as any route (it is the one it holds); a history shows no change.
	RefreshOf uint64 `json:"refresh_of,omitempty"`
}

// Check returns an error naming the first field of r that an edge cannot use, or nil.
func (r EdgeRoute) Check() error {
	if err := CheckToken(r.Edge); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return r.Route.check("route")
}

// Table is r as a route table of its one app, for readers that show either.
func (r EdgeRoute) Table() RouteTable {
	return RouteTable{Edge: r.Edge, ConfigSHA256: r.ConfigSHA256, StateSeq: r.StateSeq, Apps: []AppRoute{r.Route}}
}

// RouteTable is the routing state of one edge: what an edge keeps on disk, and what the
// controller published as one message before each app's route had a subject of its own.
type RouteTable struct {
	// Edge names the edge the table is for.
	Edge string `json:"edge"`
	// ConfigSHA256 is the digest of the configuration document the table was computed from
	// ("" when the configuration was given to the controller directly).
	ConfigSHA256 string `json:"config_sha256,omitempty"`
	// StateSeq is the last STATE stream sequence folded into the table.
	StateSeq uint64 `json:"state_seq"`
	// Apps are the routes of every app the edge fronts, in configuration order.
	Apps []AppRoute `json:"apps"`
}

// AppRoute is how an edge forwards one app's traffic.
type AppRoute struct {
	App string `json:"app"`
	// Pool is the app's pool local to the edge.
	Pool string `json:"pool"`
	// Available reports whether the local pool has at least min_available serving endpoints.
	Available bool `json:"available"`
	// Endpoints are the local pool's instances with their decided status.
	Endpoints []RouteEndpoint `json:"endpoints"`
	// Secondary is where traffic goes when the local pool is not available; nil when the edge
	// has no secondary for the app.
	Secondary *SecondaryRoute `json:"secondary,omitempty"`
	// RetryMethods are retried once on the next target after a connection error, besides GET,
	// HEAD and OPTIONS.
	RetryMethods []string `json:"retry_methods,omitempty"`
}

// RouteEndpoint is one instance of a local pool.
type RouteEndpoint struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Status is the decided status; unknown is served, as DNS answers do before the first check.
	Status Status `json:"status"`
	Weight int    `json:"weight"`
}

// Serving reports whether the endpoint may take traffic.
func (e RouteEndpoint) Serving() bool { return e.Status == StatusUp || e.Status == StatusUnknown }

// SecondaryRoute is the edge that takes an app's traffic when the local pool is down.
type SecondaryRoute struct {
	Edge string `json:"edge"`
	// Hostname is resolved through DNS to reach the secondary.
	Hostname string `json:"hostname"`
	// Address is the secondary's configured IP, used only until the hostname has resolved once.
	Address string `json:"address"`
	// Port is the port of the secondary's listener for the app.
	Port int `json:"port"`
	// Status is the secondary edge's recorded liveness.
	Status Status `json:"status"`
}

// Check returns an error naming the first field of t that an edge cannot use, or nil.
func (t RouteTable) Check() error {
	if err := CheckToken(t.Edge); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	for i, a := range t.Apps {
		if err := a.check("apps[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	return nil
}

// check returns an error naming the first field of a, under path, that an edge cannot use.
func (a AppRoute) check(path string) error {
	if err := CheckToken(a.App); err != nil {
		return fmt.Errorf("%s.app: %w", path, err)
	}
	for j, e := range a.Endpoints {
		if _, err := netip.ParseAddrPort(e.Address); err != nil {
			return fmt.Errorf("%s.endpoints[%d].address: want ip:port, got %q", path, j, e.Address)
		}
		if e.Weight < 0 {
			return fmt.Errorf("%s.endpoints[%d].weight: must not be negative, got %d", path, j, e.Weight)
		}
	}
	if s := a.Secondary; s != nil {
		if s.Hostname == "" {
			return fmt.Errorf("%s.secondary.hostname: must not be empty", path)
		}
		if s.Port < 1 || s.Port > 65535 {
			return fmt.Errorf("%s.secondary.port: want a port in 1-65535, got %d", path, s.Port)
		}
		if s.Address != "" {
			if _, err := netip.ParseAddr(s.Address); err != nil {
				return fmt.Errorf("%s.secondary.address: want an IP address, got %q", path, s.Address)
			}
		}
	}
	return nil
}

package up

import (
	"context"
	"slices"
	"sync"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/demo"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// roleSet runs a prober per probing region and an edge per configured edge, each as a
// demo.Switch, and follows configuration versions: it starts those a version adds, stops those
// it removes, and hands the version to the others. The regions stay as they are when they were
// fixed (--regions). Handing the versions on itself, rather than each role following CONFIG,
// spares an edge a version without its entry, which it would refuse before being stopped.
type roleSet struct {
	js  jetstream.JetStream
	g   *group
	log zerolog.Logger
	// roleLog is what the probers and edges log to.
	roleLog      zerolog.Logger
	metrics      *metrics.Metrics
	resolver     string // the DNS server edges resolve their peers with
	regionsFixed bool
	// credentialDirs are where the probers' checks may read files.
	credentialDirs config.CredentialDirs

	// mu guards the fields below: the roles follower changes them while the roles (starting
	// again after a stop) and the stack's users (tests, the demo control) read them.
	mu sync.Mutex
	// latest is the last version applied: a role that starts, or starts again, runs from it.
	latest  *config.Config
	probers map[string]*role // by region
	edges   map[string]*role // by edge name
}

// role is one prober or edge, and the versions handed to it.
type role struct {
	sw *demo.Switch
	// configs holds the last version handed over that the role has not taken yet.
	configs chan *config.Config
}

// offer hands c to r, in place of a version r has not taken yet.
func (r *role) offer(c *config.Config) {
	select {
	case <-r.configs:
	default:
	}
	r.configs <- c
}

func newRoleSet(js jetstream.JetStream, g *group, log zerolog.Logger, m *metrics.Metrics, resolver string, regionsFixed bool, dirs config.CredentialDirs) *roleSet {
	return &roleSet{js: js, g: g, log: log.With().Str("component", "up").Logger(), roleLog: log, metrics: m, resolver: resolver,
		regionsFixed: regionsFixed, credentialDirs: dirs, probers: map[string]*role{}, edges: map[string]*role{}}
}

// start runs the probers of regions and the edges of c as the stack's first roles: one that
// fails stops the stack.
func (rs *roleSet) start(c *config.Config, regions []string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.latest = c
	for _, r := range regions {
		rs.startProber(r, true)
	}
	for _, e := range c.Edges {
		rs.startEdge(e.Name, true)
	}
}

// follow applies every version from configs until ctx ends.
func (rs *roleSet) follow(ctx context.Context, configs <-chan *config.Config) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-configs:
			rs.apply(c)
		}
	}
}

// apply stops the probers and edges c removed, hands c to those it keeps, then starts those it
// added: a renamed edge frees its listeners before its successor binds them.
func (rs *roleSet) apply(c *config.Config) {
	regions := Regions(c)
	rs.mu.Lock()
	rs.latest = c
	var stop []*demo.Switch
	for name, r := range rs.probers {
		if rs.regionsFixed || slices.Contains(regions, name) {
			r.offer(c)
			continue
		}
		delete(rs.probers, name)
		stop = append(stop, r.sw)
		rs.log.Info().Str("region", name).Uint64("version", c.Version).Msg("prober stopped: its region left the configuration")
	}
	for name, r := range rs.edges {
		if c.Edge(name) != nil {
			r.offer(c)
			continue
		}
		delete(rs.edges, name)
		stop = append(stop, r.sw)
		rs.log.Info().Str("edge", name).Uint64("version", c.Version).Msg("edge stopped: it left the configuration")
	}
	rs.mu.Unlock()
	for _, sw := range stop {
		sw.Stop()
	}

	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, name := range regions {
		if !rs.regionsFixed && rs.probers[name] == nil {
			rs.startProber(name, false)
			rs.log.Info().Str("region", name).Uint64("version", c.Version).Msg("prober started for a region the configuration added")
		}
	}
	for _, e := range c.Edges {
		if rs.edges[e.Name] == nil {
			rs.startEdge(e.Name, false)
			rs.log.Info().Str("edge", e.Name).Uint64("version", c.Version).Msg("edge started: the configuration added it")
		}
	}
}

// startProber runs the prober of region; rs.mu is held.
func (rs *roleSet) startProber(region string, first bool) {
	rs.run(rs.probers, region, "prober "+region, first, func(ctx context.Context, c *config.Config, configs <-chan *config.Config) error {
		return prober.Run(ctx, prober.Options{JS: rs.js, Config: c, Region: region, Name: region + "-1", Log: rs.roleLog, Metrics: rs.metrics,
			Configs: configs, CredentialDirs: rs.credentialDirs})
	})
}

// startEdge runs the edge named name; rs.mu is held.
func (rs *roleSet) startEdge(name string, first bool) {
	rs.run(rs.edges, name, "edge "+name, first, func(ctx context.Context, c *config.Config, configs <-chan *config.Config) error {
		return proxy.Run(ctx, proxy.Options{JS: rs.js, Config: c, Edge: name, Resolver: rs.resolver, Log: rs.roleLog, Metrics: rs.metrics,
			Configs: configs})
	})
}

// run starts a role as set[key], and runs it from the latest version each time it starts; rs.mu
// is held. A role of the first version that fails stops the stack, as any role failing at start
// does. One a later version started is logged and dropped from set instead, and the stack runs
// on: the next version naming it starts it again.
func (rs *roleSet) run(set map[string]*role, key, name string, first bool, run func(ctx context.Context, c *config.Config, configs <-chan *config.Config) error) {
	r := &role{configs: make(chan *config.Config, 1)}
	version := rs.latest.Version
	r.sw = demo.NewSwitch(name, func(ctx context.Context) error {
		rs.mu.Lock()
		c := rs.latest
		select {
		case <-r.configs: // c is that version, or a later one
		default:
		}
		rs.mu.Unlock()
		return run(ctx, c, r.configs)
	})
	report := rs.g.fail
	if !first {
		report = func(role string, err error) {
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if set[key] == r {
				delete(set, key)
			}
			rs.log.Error().Str("role", role).Uint64("version", version).Err(err).Msg("role started for a configuration version failed; the others run on")
		}
	}
	set[key] = r
	r.sw.Start(rs.g.ctx, report)
}

// edge returns the edge named name, or nil.
func (rs *roleSet) edge(name string) *demo.Switch {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.edges[name]; r != nil {
		return r.sw
	}
	return nil
}

// stop stops every prober and edge and waits for them.
func (rs *roleSet) stop() {
	rs.mu.Lock()
	var all []*demo.Switch
	for _, set := range []map[string]*role{rs.probers, rs.edges} {
		for _, r := range set {
			all = append(all, r.sw)
		}
	}
	rs.mu.Unlock()
	for _, sw := range all {
		sw.Stop()
	}
}

package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
)

type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

func (p *problems) token(path, s string) {
	if err := events.CheckToken(s); err != nil {
		p.add(path, "%v", err)
	}
}

var hostnameRE = regexp.MustCompile(`^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+$`)

func (p *problems) dnsName(path, s string) bool {
	if s == "" {
		p.add(path, "must not be empty")
		return false
	}
	if len(s) > 254 || !hostnameRE.MatchString(s) {
		p.add(path, "%q is not a valid DNS name", strings.TrimSuffix(s, "."))
		return false
	}
	return true
}

// keyName reports whether a TSIG key's name, with or without its final dot, can be written in a
// DNS message.
func keyName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
	}
	return true
}

// minRetryInterval and maxRetryInterval bound the wait between a failed push and its retry.
const (
	minRetryInterval = Duration(100 * time.Millisecond)
	maxRetryInterval = Duration(time.Hour)
)

// Validate returns every problem of a defaulted configuration, each prefixed with its path.
func (c *Config) Validate() []string {
	var p problems
	// Every lookup below goes through an index: validating is linear in the configuration's size.
	n := newNames(c)
	if len(c.Zones) == 0 {
		p.add("zones", "at least one zone is required")
	}
	zones, zoneTokens := map[string]bool{}, map[string]string{}
	// keys holds the zone that first defines each transfer key, by its name in lower case: a
	// server verifies a signed message by the key its TSIG record names, so one name is one key.
	keys := map[string]int{}
	for i, z := range c.Zones {
		path := fmt.Sprintf("zones[%d]", i)
		if p.dnsName(path+".name", z.Name) {
			tok := events.ZoneToken(z.Name)
			switch other, ok := zoneTokens[tok]; {
			case zones[z.Name]:
				p.add(path+".name", "duplicate zone %q", strings.TrimSuffix(z.Name, "."))
			case ok:
				// The zone's changes are events on that subject: two zones on one would
				// read each other's as their own history (IXFR).
				p.add(path+".name", "zone %q has the event subjects of zone %q (%s): rename one", strings.TrimSuffix(z.Name, "."), strings.TrimSuffix(other, "."), "detour.dns."+tok+".<server>")
			}
			zones[z.Name], zoneTokens[tok] = true, z.Name
		}
		z.validate(&p, path)
		if k := z.TransferTSIG; k != nil && k.Name != "" {
			name := strings.ToLower(strings.TrimSuffix(k.Name, "."))
			if first, ok := keys[name]; !ok {
				keys[name] = i
			} else if o := c.Zones[first].TransferTSIG; o.Algorithm != k.Algorithm || o.Secret != k.Secret || o.SecretFile != k.SecretFile || o.SecretEnv != k.SecretEnv {
				p.add(path+".transfer_tsig", "key %q is defined otherwise by zones[%d].transfer_tsig: a key's name names one algorithm and secret", k.Name, first)
			}
		}
	}

	apps, fqdns := map[string]bool{}, map[string]bool{}
	for i := range c.Apps {
		a := &c.Apps[i]
		path := fmt.Sprintf("apps[%d]", i)
		p.token(path+".name", a.Name)
		if apps[a.Name] {
			p.add(path+".name", "duplicate app %q", a.Name)
		}
		apps[a.Name] = true
		if p.dnsName(path+".fqdn", a.FQDN) {
			if fqdns[a.FQDN] {
				p.add(path+".fqdn", "duplicate fqdn %q", strings.TrimSuffix(a.FQDN, "."))
			}
			fqdns[a.FQDN] = true
			if len(c.Zones) > 0 && c.ZoneOf(a.FQDN) == nil {
				p.add(path+".fqdn", "%q lies in none of the configured zones", strings.TrimSuffix(a.FQDN, "."))
			}
		}
		c.validateApp(&p, n, path, a)
	}

	seen := map[string]bool{}
	for i := range c.Edges {
		e := &c.Edges[i]
		path := fmt.Sprintf("edges[%d]", i)
		p.token(path+".name", e.Name)
		if seen[e.Name] {
			p.add(path+".name", "duplicate edge %q", e.Name)
		}
		seen[e.Name] = true
		c.validateEdge(&p, n, path, e)
	}
	c.validateMarkers(&p)
	c.DNS.validate(&p, "dns")
	c.Streams.Probes.validate(&p, "streams.probes")
	c.validateRegions(&p)
	c.validateAlerts(&p)
	return p
}

// validateMarkers refuses a push marker at a name whose records Detour pushes: an app's CNAME
// cannot stand beside the marker's TXT record.
func (c *Config) validateMarkers(p *problems) {
	owners := map[string]string{}
	for i := range c.Apps {
		owners[c.Apps[i].FQDN] = fmt.Sprintf("apps[%d].fqdn", i)
	}
	for i := range c.Edges {
		owners[c.Edges[i].Hostname] = fmt.Sprintf("edges[%d].hostname", i)
	}
	for i, z := range c.Zones {
		if z.Push == nil {
			continue
		}
		if owner, ok := owners[z.Push.Marker]; ok {
			p.add(fmt.Sprintf("zones[%d].push.marker", i), "%q is the name of %s, whose records Detour replaces: give the marker a name of its own", strings.TrimSuffix(z.Push.Marker, "."), owner)
		}
	}
}

func (ps ProbeStream) validate(p *problems, path string) {
	if ps.MaxAge != 0 && ps.MaxAge.D() < time.Minute {
		p.add(path+".max_age", "want at least 1m, got %s", ps.MaxAge)
	}
	if ps.MaxBytes != 0 && ps.MaxBytes < 1<<20 {
		p.add(path+".max_bytes", "want at least 1MiB (a batch of results takes up to 512KiB), got %s", ps.MaxBytes)
	}
}

func (z *Zone) validate(p *problems, path string) {
	p.dnsName(path+".hostmaster", z.Hostmaster)
	for j, ns := range z.Nameservers {
		np := fmt.Sprintf("%s.nameservers[%d]", path, j)
		p.dnsName(np+".name", ns.Name)
		if ns.Address != "" {
			if _, err := netip.ParseAddr(ns.Address); err != nil {
				p.add(np+".address", "want an IP address, got %q", ns.Address)
			}
		}
	}
	for j, s := range z.TransferTo {
		if msg := prefixProblem(s, "an IP address or CIDR"); msg != "" {
			p.add(fmt.Sprintf("%s.transfer_to[%d]", path, j), "%s", msg)
		} else if strings.Contains(s, "%") {
			// A client is matched by its address alone (the batched UDP path never reads a
			// zone), so fe80::53%eth0 would let fe80::53 on every link transfer the zone.
			p.add(fmt.Sprintf("%s.transfer_to[%d]", path, j), "want an address without an IPv6 zone (a secondary is matched by its address on every link), got %q", s)
		}
	}
	// One secondary listed twice (under two spellings, say) would get each NOTIFY twice at once:
	// the sender coalesces per entry.
	notified := map[netip.AddrPort]int{}
	for j, s := range z.Notify {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			p.add(fmt.Sprintf("%s.notify[%d]", path, j), "want ip:port, got %q", s)
			continue
		}
		if problem := notServer(ap); problem != "" {
			p.add(fmt.Sprintf("%s.notify[%d]", path, j), "%s in %q", problem, s)
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if k, dup := notified[ap]; dup {
			p.add(fmt.Sprintf("%s.notify[%d]", path, j), "%q names the secondary notify[%d] names (%q)", s, k, z.Notify[k])
			continue
		}
		notified[ap] = j
	}
	if z.TransferTSIG != nil {
		z.TransferTSIG.validate(p, path+".transfer_tsig", "transfers and NOTIFYs are signed with it")
	}
	if z.Push != nil {
		pp := path + ".push"
		if ap, err := netip.ParseAddrPort(z.Push.Server); err != nil {
			if hostName(z.Push.Server) {
				// The DNS server does not resolve it: every push would fail, for ever.
				p.add(pp+".server", "want ip:port, an IP address and not a host name, got %q", z.Push.Server)
			} else {
				p.add(pp+".server", "want ip:port, got %q", z.Push.Server)
			}
		} else if problem := notServer(ap); problem != "" {
			p.add(pp+".server", "%s in %q", problem, z.Push.Server)
		}
		z.Push.TSIG.validate(p, pp+".tsig", "updates are always signed")
		if z.Push.RetryInterval < minRetryInterval {
			// Each retry opens a connection to the primary: a primary that refuses at once
			// would be asked as fast as the loop turns.
			p.add(pp+".retry_interval", "want at least %s, got %s", time.Duration(minRetryInterval), time.Duration(z.Push.RetryInterval))
		} else if z.Push.RetryInterval > maxRetryInterval {
			// Doubled up to 16 times at each failure: a primary back up would wait for as long.
			p.add(pp+".retry_interval", "want at most 1h, got %s", time.Duration(z.Push.RetryInterval))
		}
		if p.dnsName(pp+".marker", z.Push.Marker) {
			switch {
			case z.Push.Marker == z.Name:
				// The marker replaces every TXT record at its name: SPF and site verifications
				// live at the apex.
				p.add(pp+".marker", "want a name below the zone, not its apex: every TXT record at the marker's name is replaced")
			case !InZone(z.Push.Marker, z.Name):
				p.add(pp+".marker", "%q lies outside zone %q", strings.TrimSuffix(z.Push.Marker, "."), strings.TrimSuffix(z.Name, "."))
			}
		}
	}
}

// applyDefaults sets the algorithm when none is given.
func (k *TSIG) applyDefaults() {
	if k.Algorithm == "" {
		k.Algorithm = "hmac-sha256"
	}
}

// validate reports the problems of a TSIG key at path; why says what the key's name is for.
func (k *TSIG) validate(p *problems, path, why string) {
	if k.Name == "" {
		p.add(path+".name", "must not be empty: %s", why)
	} else if !keyName(k.Name) {
		// The key's name is the owner of every signed message's TSIG record: no message
		// carries another, and every signed exchange would fail.
		p.add(path+".name", "want a DNS name: labels of 1 to 63 characters, 253 in all")
	}
	switch k.Algorithm {
	case "hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1":
	default:
		p.add(path+".algorithm", "want hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1, got %q", k.Algorithm)
	}
	if validateSecret(p, path, k.Secret, k.SecretFile, k.SecretEnv) && k.Secret != "" {
		if _, err := base64.StdEncoding.DecodeString(k.Secret); err != nil {
			p.add(path+".secret", "want a base64 key")
		}
	}
}

func (c *Config) validateApp(p *problems, n *names, path string, a *App) {
	switch a.Policy {
	case PolicyFailover, PolicyWeighted, PolicyRoundRobin, PolicySource:
	default:
		p.add(path+".policy", "want failover, weighted, round_robin or source, got %q", a.Policy)
	}
	switch a.WhenAllDown {
	case FailOpen, FailClosed:
	default:
		p.add(path+".when_all_down", "want fail_open or fail_closed, got %q", a.WhenAllDown)
	}
	if a.TTL > 86400 {
		p.add(path+".ttl", "want at most 86400 seconds, got %d", a.TTL)
	}
	if a.MaxAnswers < 0 {
		p.add(path+".max_answers", "must not be negative, got %d", a.MaxAnswers)
	}
	if !(a.Quorum > 0 && a.Quorum <= 1) { // NaN is refused too
		p.add(path+".quorum", "want a share in (0, 1], got %v", a.Quorum)
	}
	if a.HoldDown < 0 {
		p.add(path+".hold_down", "must not be negative")
	} else if a.HoldDown > MaxHoldTime {
		p.add(path+".hold_down", "want at most 720h (30 days), got %s", a.HoldDown)
	}
	a.Check.validate(p, path+".check")

	if len(a.Pools) == 0 {
		p.add(path+".pools", "at least one pool is required")
	}
	pools := map[string]bool{}
	for j := range a.Pools {
		pl := &a.Pools[j]
		pp := fmt.Sprintf("%s.pools[%d]", path, j)
		p.token(pp+".name", pl.Name)
		if pools[pl.Name] {
			p.add(pp+".name", "duplicate pool %q", pl.Name)
		}
		if pl.Name == events.EdgeProbePool {
			p.add(pp+".name", "%q is reserved for the checks of edge listeners", pl.Name)
		}
		if pl.Name == events.BatchProbePool {
			p.add(pp+".name", "%q is reserved for the subjects of probe batches", pl.Name)
		}
		pools[pl.Name] = true
		if pl.Weight < 0 {
			p.add(pp+".weight", "must not be negative, got %d", pl.Weight)
		} else if pl.Weight > MaxWeight {
			p.add(pp+".weight", "want at most %d, got %d", MaxWeight, pl.Weight)
		}
		if len(pl.Endpoints) == 0 {
			p.add(pp+".endpoints", "at least one endpoint is required")
		} else if pl.MinAvailable.Percent == 0 && pl.MinAvailable.Count > len(pl.Endpoints) {
			p.add(pp+".min_available", "%d is more than the pool's %d endpoints", pl.MinAvailable.Count, len(pl.Endpoints))
		}
		names := map[string]bool{}
		for k, e := range pl.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", pp, k)
			// A name derived from an address refused is not told of apart.
			if c.validateAddress(p, n, ep+".address", a, e.Address) || e.Name != events.AddressToken(e.Address) {
				p.token(ep+".name", e.Name)
			}
			if names[e.Name] {
				p.add(ep+".name", "duplicate endpoint %q in pool %q", e.Name, pl.Name)
			}
			names[e.Name] = true
			if e.Name == events.OverrideWholePool {
				p.add(ep+".name", "%q is reserved for the override of a whole pool", e.Name)
			}
			if e.Weight != nil && *e.Weight < 0 {
				p.add(ep+".weight", "must not be negative, got %d", *e.Weight)
			} else if e.Weight != nil && *e.Weight > MaxWeight {
				p.add(ep+".weight", "want at most %d, got %d", MaxWeight, *e.Weight)
			}
		}
	}
	refPools := func(path string, list []string) {
		for k, name := range list {
			if !pools[name] {
				p.add(fmt.Sprintf("%s[%d]", path, k), "no pool %q in app %q", name, a.Name)
			}
		}
	}
	if a.Policy != PolicySource && len(a.Sources) > 0 {
		p.add(path+".sources", "only policy source uses sources (policy is %q)", a.Policy)
	}
	for j, r := range a.Sources {
		sp := fmt.Sprintf("%s.sources[%d]", path, j)
		if len(r.CIDRs) == 0 {
			p.add(sp+".cidrs", "at least one CIDR is required")
		}
		for k, s := range r.CIDRs {
			if !strings.Contains(s, "/") {
				p.add(fmt.Sprintf("%s.cidrs[%d]", sp, k), "want a CIDR such as 10.1.0.0/16, got %q", s)
			} else if msg := prefixProblem(s, "a CIDR such as 10.1.0.0/16"); msg != "" {
				p.add(fmt.Sprintf("%s.cidrs[%d]", sp, k), "%s", msg)
			}
		}
		if len(r.Pools) == 0 {
			p.add(sp+".pools", "at least one pool is required")
		}
		refPools(sp+".pools", r.Pools)
	}
	refPools(path+".default_pools", a.DefaultPools)
	for j, name := range a.Ingress {
		if n.edge(c, name) == nil {
			p.add(fmt.Sprintf("%s.ingress[%d]", path, j), "no edge %q", name)
		}
	}
	if a.PrimaryEdge != "" && n.edge(c, a.PrimaryEdge) == nil {
		p.add(path+".primary_edge", "no edge %q", a.PrimaryEdge)
	}
}

// validateAddress checks an endpoint's address: an IP without a zone (a DNS answer carries
// none: clients would be sent fe80::1 on their own link), with a port wherever one is needed
// (the app's check connects to one that check.port does not set, or an edge forwards to it).
// It reports whether the address is an IP without a zone.
func (c *Config) validateAddress(p *problems, n *names, path string, a *App, addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	ip := ap.Addr()
	if err != nil {
		if ip, err = netip.ParseAddr(addr); err != nil {
			p.add(path, "want an IP address or ip:port, got %q", addr)
			return false
		}
	}
	if ip.Zone() != "" {
		p.add(path, "want an address without a zone: a DNS answer carries none, got %q", addr)
		return false
	}
	if ap.IsValid() {
		return true
	}
	if edges := n.frontedBy[a.Name]; len(edges) > 0 {
		p.add(path, "want ip:port: edge %q forwards to it, got %q", c.Edges[edges[0]].Name, addr)
	} else if a.Check.Type != CheckICMP && a.Check.Port == 0 {
		p.add(path, "want ip:port: the %s check needs a port and check.port sets none, got %q", a.Check.Type, addr)
	}
	return true
}

// maxInterval bounds a check's interval, and MaxHoldTime its stale_after and an app's hold_down:
// far beyond any use (a failover that waits a day for its first check is none), and far below
// the year 2262, past which a deadline reckoned in Unix nanoseconds overflows.
const (
	maxInterval = Duration(24 * time.Hour)
	MaxHoldTime = Duration(30 * 24 * time.Hour)
)

func (k *Check) validate(p *problems, path string) {
	switch k.Type {
	case CheckHTTP, CheckHTTPS, CheckTCP, CheckICMP, CheckDNS:
	default:
		p.add(path+".type", "want http, https, tcp, icmp or dns, got %q", k.Type)
	}
	if k.Port < 0 || k.Port > 65535 {
		p.add(path+".port", "want a port in 1-65535, got %d", k.Port)
	}
	if k.Interval <= 0 {
		p.add(path+".interval", "must be positive")
	} else if k.Interval > maxInterval {
		p.add(path+".interval", "want at most 24h, got %s", k.Interval)
	}
	if k.Timeout <= 0 {
		p.add(path+".timeout", "must be positive")
	} else if k.Timeout > k.Interval && k.Interval > 0 {
		p.add(path+".timeout", "%s is longer than the interval %s", k.Timeout, k.Interval)
	}
	if k.Jitter < 0 || (k.Interval > 0 && k.Jitter > k.Interval) {
		p.add(path+".jitter", "want between 0 and the interval %s, got %s", k.Interval, k.Jitter)
	}
	if k.Fall < 1 {
		p.add(path+".fall", "want at least 1, got %d", k.Fall)
	}
	if k.Rise < 1 {
		p.add(path+".rise", "want at least 1, got %d", k.Rise)
	}
	if k.StaleAfter <= 0 {
		p.add(path+".stale_after", "must be positive")
	} else if k.StaleAfter > MaxHoldTime {
		p.add(path+".stale_after", "want at most 720h (30 days), got %s", k.StaleAfter)
	}
	for j, s := range k.ExpectStatus {
		if _, _, err := ParseStatusRange(s); err != nil {
			p.add(fmt.Sprintf("%s.expect_status[%d]", path, j), "%v", err)
		}
	}
	if k.Path != "" && !strings.HasPrefix(k.Path, "/") && !strings.Contains(k.Path, Redacted) {
		// Not repeated: the path may carry a token.
		p.add(path+".path", "must start with '/'")
	}
	k.validateHeaders(p, path)
	switch {
	case given(k.Send, k.SendFile, k.SendEnv) > 1:
		p.add(path, "want only one of send, send_file or send_env")
	case k.SendEnv != "" && !envNameRE.MatchString(k.SendEnv):
		// Not repeated: what is not a variable's name may be the login itself.
		p.add(path+".send_env", envNameWant)
	}
	if k.Type == CheckDNS && k.Query == "" {
		p.add(path+".query", "a dns check needs the name to ask for")
	}
	if k.Expect != "" && k.Type != CheckTCP {
		p.add(path+".expect", "only tcp checks use expect")
	}
}

func (c *Config) validateEdge(p *problems, n *names, path string, e *Edge) {
	p.token(path+".region", e.Region)
	p.dnsName(path+".hostname", e.Hostname)
	if _, err := netip.ParseAddr(e.Address); err != nil {
		p.add(path+".address", "want an IP address, got %q", e.Address)
	}
	if e.Heartbeat.Interval <= 0 {
		p.add(path+".heartbeat.interval", "must be positive")
	} else if e.Heartbeat.Interval > maxInterval {
		p.add(path+".heartbeat.interval", "want at most 24h, got %s", e.Heartbeat.Interval)
	}
	if e.Heartbeat.Fall < 1 {
		p.add(path+".heartbeat.fall", "want at least 1, got %d", e.Heartbeat.Fall)
	} else if i := e.Heartbeat.Interval; i > 0 && i <= maxInterval && int64(e.Heartbeat.Fall) > int64(MaxHoldTime/i) {
		// The controller's deadline is fall × interval: past the largest duration it would wrap.
		p.add(path+".heartbeat.fall", "fall × interval want at most 720h (30 days), got %d × %s", e.Heartbeat.Fall, i)
	}
	if e.MaxConns < 0 || e.MaxConns > MaxEdgeConns {
		p.add(path+".max_conns", "want 1 to %d, or 0 for the default from the file limit, got %d", MaxEdgeConns, e.MaxConns)
	}
	listens, fronted := map[string]bool{}, map[string]int{}
	for j, ea := range e.Apps {
		ap := fmt.Sprintf("%s.apps[%d]", path, j)
		a := n.app(c, ea.App)
		if a == nil {
			p.add(ap+".app", "no app %q", ea.App)
		} else if k, ok := fronted[ea.App]; ok {
			// The probers check an edge's listener of an app as one endpoint: a second would
			// share its results, and one's failure could hide behind the other's success.
			p.add(ap+".app", "app %q is already fronted by %s.apps[%d]: one listener per app", ea.App, path, k)
		} else {
			fronted[ea.App] = j
		}
		if _, err := netip.ParseAddrPort(ea.Listen); err != nil {
			p.add(ap+".listen", "want ip:port, got %q", ea.Listen)
		} else if listens[ea.Listen] {
			p.add(ap+".listen", "%s is already used by another app of this edge", ea.Listen)
		}
		listens[ea.Listen] = true
		if ea.Mode != ModeHTTP && ea.Mode != ModeTCP {
			p.add(ap+".mode", "want http or tcp, got %q", ea.Mode)
		}
		if a != nil {
			if ea.Pool == "" {
				p.add(ap+".pool", "no pool of app %q is in region %q: name the local pool", ea.App, e.Region)
			} else if a.Pool(ea.Pool) == nil {
				p.add(ap+".pool", "no pool %q in app %q", ea.Pool, ea.App)
			}
		}
		ea.validatePolicy(p, ap)
		if ea.Secondary != "" {
			if n.edge(c, ea.Secondary) == nil {
				p.add(ap+".secondary", "no edge %q", ea.Secondary)
			} else if ea.Secondary == e.Name {
				p.add(ap+".secondary", "an edge cannot be its own secondary")
			} else if !n.fronts(ea.Secondary, ea.App) {
				p.add(ap+".secondary", "edge %q does not front app %q", ea.Secondary, ea.App)
			}
		}
	}
}

// MaxEdgeConns bounds an edge's and an edge listener's max_conns, and the edge's default: each
// connection holds a descriptor, and Linux allows a process at most 1,048,576 of them by
// default (fs.nr_open).
const MaxEdgeConns = 1_000_000

// Values of EdgeApp.RetryOn besides the statuses 502, 503 and 504.
const (
	RetryOnConnectFailure = "connect_failure"
	RetryOnTimeout        = "timeout"
)

func (ea *EdgeApp) validatePolicy(p *problems, path string) {
	t := ea.Timeouts
	for _, f := range []struct {
		name string
		v    Duration
	}{{"connect", t.Connect}, {"response_header", t.ResponseHeader}, {"response_body", t.ResponseBody}, {"idle", t.Idle},
		{"client_header", t.ClientHeader}, {"client_body", t.ClientBody}, {"client_write", t.ClientWrite}, {"tcp_idle", t.TCPIdle}} {
		if f.v < 0 {
			p.add(path+".timeouts."+f.name, "must be positive, got %s", f.v)
		}
	}
	for i, v := range ea.RetryOn {
		switch v {
		case RetryOnConnectFailure, RetryOnTimeout, "502", "503", "504":
		default:
			p.add(fmt.Sprintf("%s.retry_on[%d]", path, i), "want connect_failure, timeout, 502, 503 or 504, got %q", v)
		}
	}
	if ea.PassiveFall < 0 {
		p.add(path+".passive_fall", "want at least 1, got %d", ea.PassiveFall)
	}
	if ea.PassiveCooldown < 0 {
		p.add(path+".passive_cooldown", "must be positive, got %s", ea.PassiveCooldown)
	}
	if ea.MaxHeaderBytes < 0 || ea.MaxHeaderBytes > 0 && ea.MaxHeaderBytes < 1024 {
		p.add(path+".max_header_bytes", "want at least 1024, got %d", ea.MaxHeaderBytes)
	}
	okMax := ea.MaxConns >= 1 && ea.MaxConns <= MaxEdgeConns
	if !okMax {
		p.add(path+".max_conns", "want 1 to %d, got %d", MaxEdgeConns, ea.MaxConns)
	}
	if ea.MaxConnsPerClient < 1 {
		p.add(path+".max_conns_per_client", "want at least 1, got %d", ea.MaxConnsPerClient)
	} else if okMax && ea.MaxConnsPerClient > ea.MaxConns {
		p.add(path+".max_conns_per_client", "want at most max_conns (%d), got %d", ea.MaxConns, ea.MaxConnsPerClient)
	}
}

// ParseStatusRange parses "200" or "200-399" into an inclusive range of HTTP status codes.
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("want a status code or range within 100-599 such as \"200-399\", got %q", s)
	}
	return lo, hi, nil
}

// errShortMapped refuses an IPv4-mapped prefix shorter than the mapped range.
var errShortMapped = errors.New("want an IPv4-mapped prefix of /96 or longer (::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n; a shorter one holds IPv6 addresses, and never an IPv4 client)")

// ParsePrefix parses an address or CIDR of the configuration (zones[].transfer_to,
// apps[].sources[].cidrs, dns.rate_limit.exempt) as the clients it holds: masked, a lone address
// as the prefix of its full length, and an IPv4-mapped IPv6 prefix ::ffff:a.b.c.d/96+n as the
// IPv4 prefix a.b.c.d/n, since Detour matches a client by its IPv4 address whichever socket
// its query came in on. An IPv4-mapped prefix shorter than /96 is an error: it holds no IPv4
// client.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errShortMapped
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// prefixProblem is what is wrong with s as an entry of a prefix list, where want says what
// the list takes; "" when nothing is.
func prefixProblem(s, want string) string {
	if _, err := ParsePrefix(s); errors.Is(err, errShortMapped) {
		return fmt.Sprintf("%v, got %q", err, s)
	} else if err != nil {
		return fmt.Sprintf("want %s, got %q", want, s)
	}
	return ""
}

// hostName reports whether s is host:port with a host that is no IP address.
func hostName(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	_, err = netip.ParseAddr(host)
	return err != nil
}

// notServer says why ap can be no DNS server that Detour sends to (a primary it pushes to, a
// secondary it notifies), or "" when it can: port 0 and the unspecified and multicast addresses
// parse as ip:port, and then every push or NOTIFY would fail for as long as the server ran.
func notServer(ap netip.AddrPort) string {
	switch a := ap.Addr().Unmap(); {
	case a.IsUnspecified():
		return "want a server's address, got the unspecified address"
	case a.IsMulticast():
		return "want a server's address, got a multicast address"
	case ap.Port() == 0:
		return "want a server's port, got 0"
	}
	return ""
}

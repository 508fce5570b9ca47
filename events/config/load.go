package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"go.yaml.in/yaml/v3"
)

// Error is an invalid configuration: every problem found, each prefixed with its path.
type Error struct {
	// File names the source of the configuration.
	File string
	// Problems are "path: what is wrong" lines.
	Problems []string
	// Lines holds the line of each problem in File, 0 where it is not known. Optional.
	Lines []int
}

// Error lists the problems under a heading, each as FILE:LINE: path: what is wrong.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return e.File + ": invalid configuration:"
	}
	return e.File + ": invalid configuration:\n" + strings.Join(e.Located(), "\n")
}

// Located returns the problems as Error lists them: each as FILE:LINE: path: what is wrong,
// without the FILE:LINE: where its line is not known.
func (e *Error) Located() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if i < len(e.Lines) && e.Lines[i] > 0 {
			p = fmt.Sprintf("%s:%d: %s", e.File, e.Lines[i], p)
		}
		out[i] = p
	}
	return out
}

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, b)
}

// ParseStored is Parse for a document stored as a version (or a copy of one): of a second YAML
// document, which a version applied before Parse refused one may hold, it reads the first alone,
// as the roles read it then, so that a role starting after an upgrade is not left without the
// active version.
func ParseStored(name string, doc []byte) (*Config, error) { return parse(name, doc, true) }

// Parse decodes a YAML document strictly (unknown keys are errors), applies the defaults and
// validates the result. Any problem refuses the whole document with an *Error listing them all,
// each with its path and line. A problem of the document's shape (an unknown key, a value of the
// wrong kind) hides the problems of what it holds, which would only be its consequences.
func Parse(name string, doc []byte) (*Config, error) { return parse(name, doc, false) }

// parse is Parse; with stored, a second YAML document is ignored rather than refused
// (ParseStored).
func parse(name string, doc []byte, stored bool) (*Config, error) {
	root, found, fatal, lines := decodeProblems(doc, stored)
	e := &Error{File: name}
	for _, p := range found {
		e.Problems = append(e.Problems, p.String())
		e.Lines = append(e.Lines, p.line)
	}
	if fatal {
		return nil, e
	}
	// Decode the tree the walk read rather than parse the document again: a configuration of
	// 100,000 endpoints spends a quarter of its start-up in the YAML parser.
	var c Config
	if err := root.Decode(&c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) && len(found) > 0 {
			return nil, e // the decoding stopped half way: what follows would mislead
		}
		if len(found) == 0 {
			// The walk and the decoder disagree: report the decoder's words rather than nothing.
			e.Problems = append(e.Problems, strings.TrimPrefix(err.Error(), "yaml: "))
			e.Lines = append(e.Lines, 0)
			return nil, e
		}
	}
	c.ApplyDefaults()
next:
	for _, p := range append(c.Validate(), redactedProblems(root)...) {
		path, _, _ := strings.Cut(p, ": ")
		for _, f := range found {
			if under(path, f.path) {
				continue next
			}
		}
		e.Problems = append(e.Problems, p)
		e.Lines = append(e.Lines, lineOf(p, lines))
	}
	if len(e.Problems) > 0 {
		return nil, e
	}
	c.canonicalServers()
	return &c, nil
}

// canonicalServers spells every zone's notify entries and push server one way (see
// canonicalAddress): as netip.AddrPort prints them (RFC 5952 for IPv6, the port without
// leading zeros), an IPv4 address's mapped form unmapped ([0::1]:053 as [::1]:53, [::ffff:127.0.0.1]:53 as
// 127.0.0.1:53). The NOTIFY sender and a reload's comparison of the lists so take two spellings
// of one secondary as one, as validation does, and a reload that spells the primary otherwise
// keeps its pusher. It runs on a valid configuration only, so that problems quote the entries
// as written.
func (c *Config) canonicalServers() {
	for i := range c.Zones {
		z := &c.Zones[i]
		for j, s := range z.Notify {
			z.Notify[j] = canonicalAddress(s)
		}
		if z.Push != nil {
			z.Push.Server = canonicalAddress(z.Push.Server)
		}
	}
}

// canonicalAddress spells an endpoint's address that is an IP address, with or without a port,
// one way: as netip prints it (RFC 5952 for IPv6: lower case, zeros compressed, so
// [2001:DB8:0::1]:80 is [2001:db8::1]:80), and an IPv4-mapped IPv6 address ([::ffff:10.0.0.1]:80,
// ::ffff:10.0.0.1) as the IPv4 address it maps (10.0.0.1:80, 10.0.0.1), as ParsePrefix takes a
// mapped prefix: the DNS answers, checks and edges reach it as IPv4. Its name, the answers a
// pool shares with another and a second entry of it are then told by that one spelling. A
// hostname is left as it is.
func canonicalAddress(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	return s
}

// mapped reports whether s is an IPv4-mapped IPv6 address, with or without a port.
func mapped(s string) bool {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Is4In6()
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4In6()
}

// ApplyDefaults fills every field left unset with its default. It is the one place defaults live.
func (c *Config) ApplyDefaults() {
	c.names = newNames(c)
	c.DNS.applyDefaults()
	if c.Streams.Probes.MaxAge == 0 {
		c.Streams.Probes.MaxAge = Duration(events.DefaultProbeRetention)
	}
	c.applyAlertDefaults()
	for i := range c.Zones {
		z := &c.Zones[i]
		z.Name = Canonical(z.Name)
		if z.TTL == 0 {
			z.TTL = 3600
		}
		if z.NegativeTTL == 0 {
			z.NegativeTTL = 5
		}
		if z.Hostmaster == "" {
			z.Hostmaster = "hostmaster." + z.Name
		}
		z.Hostmaster = Canonical(z.Hostmaster)
		if len(z.Nameservers) == 0 {
			z.Nameservers = []Nameserver{{Name: "ns1." + z.Name, Address: "127.0.0.1"}}
		}
		for j := range z.Nameservers {
			z.Nameservers[j].Name = Canonical(z.Nameservers[j].Name)
		}
		if z.TransferTSIG != nil {
			z.TransferTSIG.applyDefaults()
		}
		if z.Push != nil {
			z.Push.TSIG.applyDefaults()
			if z.Push.RetryInterval == 0 {
				z.Push.RetryInterval = Duration(2 * time.Second)
			}
			if z.Push.Marker == "" {
				z.Push.Marker = "_detour-state." + z.Name
			}
			z.Push.Marker = Canonical(z.Push.Marker)
		}
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		a.FQDN = Canonical(a.FQDN)
		if a.TTL == 0 {
			a.TTL = 30
		}
		if a.Policy == "" {
			a.Policy = PolicyFailover
		}
		if a.WhenAllDown == "" {
			a.WhenAllDown = FailOpen
		}
		if a.Quorum == 0 {
			a.Quorum = 0.5
		}
		if a.Policy == PolicySource && len(a.DefaultPools) == 0 {
			for _, p := range a.Pools {
				a.DefaultPools = append(a.DefaultPools, p.Name)
			}
		}
		a.Check.applyDefaults()
		for j := range a.Pools {
			p := &a.Pools[j]
			if !p.MinAvailable.Set() {
				p.MinAvailable = MinAvailable{Count: 1}
			}
			if p.Weight == 0 {
				p.Weight = 1
			}
			for k := range p.Endpoints {
				e := &p.Endpoints[k]
				written := e.Address
				e.Address = canonicalAddress(e.Address)
				if e.Name == "" {
					e.Name = events.AddressToken(e.Address)
					// Before every address was spelt one way, a mapped one was already
					// spelt, and named, as the IPv4 address it maps.
					if former := events.AddressToken(written); former != e.Name && !mapped(written) {
						e.written, e.formerName = written, former
					}
				}
				if e.Weight == nil {
					one := 1
					e.Weight = &one
				}
			}
		}
	}
	for i := range c.Edges {
		e := &c.Edges[i]
		e.Hostname = Canonical(e.Hostname)
		if e.Heartbeat.Interval == 0 {
			e.Heartbeat.Interval = Duration(time.Second)
		}
		if e.Heartbeat.Fall == 0 {
			e.Heartbeat.Fall = 3
		}
		for j := range e.Apps {
			ea := &e.Apps[j]
			if ea.Mode == "" {
				ea.Mode = ModeHTTP
			}
			ea.applyDefaults()
			if ea.Pool == "" {
				if a := c.App(ea.App); a != nil {
					for _, p := range a.Pools {
						if p.Region != "" && p.Region == e.Region {
							ea.Pool = p.Name
							break
						}
					}
				}
			}
		}
	}
}

// Defaults of an edge app's forwarding policy. Connect is short because an edge reaches its
// local pool over a LAN, where a connection is made in well under a millisecond and, on a busy
// host, in tens of them, while Linux sends an unanswered SYN again only after a second: a
// connection not made in 500 ms is to a dead or blackholed instance, and the rest of a
// one-second client's patience is left for the retry on the next target.
var defaultEdgeTimeouts = EdgeTimeouts{Connect: Duration(500 * time.Millisecond),
	ResponseHeader: Duration(15 * time.Second), ResponseBody: Duration(60 * time.Second), Idle: Duration(90 * time.Second),
	ClientHeader: Duration(10 * time.Second), ClientBody: Duration(60 * time.Second),
	ClientWrite: Duration(60 * time.Second), TCPIdle: Duration(time.Hour)}

func (ea *EdgeApp) applyDefaults() {
	t, d := &ea.Timeouts, defaultEdgeTimeouts
	for _, f := range []struct{ v, d *Duration }{{&t.Connect, &d.Connect},
		{&t.ResponseHeader, &d.ResponseHeader}, {&t.ResponseBody, &d.ResponseBody}, {&t.Idle, &d.Idle}, {&t.ClientHeader, &d.ClientHeader},
		{&t.ClientBody, &d.ClientBody}, {&t.ClientWrite, &d.ClientWrite}, {&t.TCPIdle, &d.TCPIdle}} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	if ea.RetryOn == nil {
		ea.RetryOn = []string{RetryOnConnectFailure, RetryOnTimeout}
	}
	if ea.PassiveFall == 0 {
		ea.PassiveFall = 3
	}
	if ea.PassiveCooldown == 0 {
		ea.PassiveCooldown = Duration(2 * time.Second)
	}
	if ea.MaxHeaderBytes == 0 {
		ea.MaxHeaderBytes = 64 << 10
	}
	// An edge that serves many clients behind one address (a carrier's or an office's NAT: a
	// browser opens up to 6 HTTP/1 connections, or one HTTP/2) holds well under 1,000 of them
	// per address and 10,000 per listener, and 2 descriptors each fit the limit Go raises the
	// process to (the hard limit, 524,288 under systemd, 1,048,576 under Docker).
	if ea.MaxConns == 0 {
		ea.MaxConns = 10000
	}
	if ea.MaxConnsPerClient == 0 {
		ea.MaxConnsPerClient = min(1000, max(ea.MaxConns, 1))
	}
}

func (k *Check) applyDefaults() {
	if k.Type == "" {
		k.Type = CheckTCP
	}
	if k.Interval == 0 {
		k.Interval = Duration(5 * time.Second)
	}
	if k.Timeout == 0 {
		k.Timeout = min(Duration(2*time.Second), k.Interval)
	}
	if k.Fall == 0 {
		k.Fall = 3
	}
	if k.Rise == 0 {
		k.Rise = 2
	}
	if k.StaleAfter == 0 {
		k.StaleAfter = 3 * k.Interval
	}
	switch k.Type {
	case CheckHTTP, CheckHTTPS:
		if k.Path == "" {
			k.Path = "/"
		}
		if k.Method == "" {
			k.Method = "GET"
		}
		if len(k.ExpectStatus) == 0 {
			k.ExpectStatus = []string{"200-399"}
		}
	case CheckDNS:
		if k.QueryType == "" {
			k.QueryType = "A"
		}
		if k.ExpectRcode == "" {
			k.ExpectRcode = "NOERROR"
		}
	}
}

// Canonical lower-cases a DNS name and gives it its trailing dot; "" stays "".
func Canonical(name string) string {
	if name == "" {
		return ""
	}
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

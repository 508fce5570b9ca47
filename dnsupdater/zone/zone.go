package zone

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
)

// Static is the part of the served zones that only the configuration decides: apex NS, glue,
// edge hostnames and the zones' static records. Compile it once per configuration; Project
// then adds the answers that follow the state.
type Static struct {
	cfg   *config.Config
	zones []staticZone
}

type staticZone struct {
	cfg *config.Zone
	// names maps every canonical name of the zone to its static RRsets by type.
	names map[string]map[uint16][]dns.RR
	// apps are the indexes in cfg.Apps of the apps whose fqdn lies in this zone.
	apps []int
}

// Zone is one served zone at one serial.
type Zone struct {
	// Name is the canonical apex, e.g. "demo.test.".
	Name   string
	Config *config.Zone
	Serial uint32
	// SOA is the apex SOA record at Serial.
	SOA *dns.SOA
	// Nodes holds every name of the zone, empty non-terminals included.
	Nodes Nodes
	// version tells the projections apart; base is the version Replace derived this one
	// from, and replaced the names whose nodes it holds in place of base's (see ReplacedSince).
	version, base uint64
	replaced      []string
}

// versions numbers the projections, from 1.
var versions atomic.Uint64

// ReplacedSince returns the names whose nodes z holds in place of old's, and true, when z is
// old with answers replaced (Zone.Replace): every other node of z is old's own, so what a version
// changed is known without visiting the zone. It returns false for any other pair.
func (z *Zone) ReplacedSince(old *Zone) ([]string, bool) {
	if old == nil || z.base == 0 || z.base != old.version {
		return nil, false
	}
	return z.replaced, true
}

// Node is one name of a zone.
type Node struct {
	Name string
	// RRsets are the records the configuration gives the name, by type. Their owner names and
	// the names their NS, MX, SRV and CNAME records point to are canonical (Canonical): the
	// answers look these up as they are.
	RRsets map[uint16][]dns.RR
	// App is the answer of the app whose fqdn this is, or nil.
	App *AppAnswer
	// AppTTL is the TTL of App's records.
	AppTTL uint32
}

// Compile parses and checks the static part of the configuration's zones. Its errors name the
// field they come from.
func Compile(c *config.Config) (*Static, error) {
	s := &Static{cfg: c}
	var problems []string
	for i := range c.Zones {
		z := &c.Zones[i]
		sz := staticZone{cfg: z, names: map[string]map[uint16][]dns.RR{}}
		path := fmt.Sprintf("zones[%d]", i)
		var origins []origin
		add := func(rr dns.RR, from string) {
			addRR(sz.names, rr)
			origins = append(origins, origin{path: from, rr: rr})
		}
		add(&dns.SOA{Hdr: hdr(z.Name, dns.TypeSOA, z.TTL)}, path)
		for k, ns := range z.Nameservers {
			add(&dns.NS{Hdr: hdr(z.Name, dns.TypeNS, z.TTL), Ns: ns.Name}, fmt.Sprintf("%s.nameservers[%d].name", path, k))
			if ns.Address != "" && config.InZone(ns.Name, z.Name) {
				if ip, err := netip.ParseAddr(ns.Address); err == nil {
					add(addressRR(ns.Name, z.TTL, ip), fmt.Sprintf("%s.nameservers[%d].address", path, k))
				}
			}
		}
		var records []origin
		cuts := map[string]map[uint16][]dns.RR{}
		for j, text := range z.Records {
			rr, err := parseRecord(text, z)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s.records[%d]: %v", path, j, err))
				continue
			}
			records = append(records, origin{path: fmt.Sprintf("%s.records[%d]", path, j), rr: rr})
			if rr.Header().Rrtype == dns.TypeNS {
				addRR(cuts, rr)
			}
		}
		for k, e := range c.Edges {
			// An edge whose hostname lies below a delegation is in the delegated zone, which
			// other servers serve: its address is theirs to give.
			if c.ZoneOf(e.Hostname) != z || delegationOf(z.Name, e.Hostname, cuts) != "" {
				continue
			}
			if ip, err := netip.ParseAddr(e.Address); err == nil {
				add(addressRR(e.Hostname, z.TTL, ip), fmt.Sprintf("edges[%d].hostname", k))
			}
		}
		for _, r := range records {
			add(r.rr, r.path)
		}
		problems = append(problems, occluded(z.Name, sz.names, origins)...)
		for j := range c.Apps {
			a := &c.Apps[j]
			if c.ZoneOf(a.FQDN) != z {
				continue
			}
			sz.apps = append(sz.apps, j)
			if a.FQDN == z.Name && (len(a.Ingress) > 0 || a.PrimaryEdge != "") {
				problems = append(problems, fmt.Sprintf("apps[%d].ingress: %q is the zone apex, where a CNAME cannot stand beside the SOA and NS records",
					j, strings.TrimSuffix(a.FQDN, ".")))
			}
			var types []string
			for t := range sz.names[a.FQDN] {
				if a.FQDN != z.Name || (t != dns.TypeSOA && t != dns.TypeNS) {
					types = append(types, dns.TypeToString[t])
				}
			}
			if len(types) > 0 {
				slices.Sort(types)
				problems = append(problems, fmt.Sprintf("apps[%d].fqdn: %q already has %s records in zone %q; an app owns its name",
					j, strings.TrimSuffix(a.FQDN, "."), strings.Join(types, ", "), strings.TrimSuffix(z.Name, ".")))
			} else if cut := delegationOf(z.Name, a.FQDN, sz.names); cut != "" && cut != a.FQDN {
				problems = append(problems, fmt.Sprintf("apps[%d].fqdn: %q is below the delegation %s (%s): it would never be answered",
					j, strings.TrimSuffix(a.FQDN, "."), strings.TrimSuffix(cut, "."), nsOrigin(cut, origins)))
			}
		}
		if len(z.TransferTo) > 0 || z.Push != nil {
			problems = append(problems, failClosedUnderWildcards(c, &sz)...)
		}
		problems = append(problems, checkRRsets(path, sz.names)...)
		s.zones = append(s.zones, sz)
	}
	if len(problems) == 0 {
		problems = s.checkChains()
	}
	if len(problems) > 0 {
		return nil, &config.Error{File: "dns zones", Problems: problems}
	}
	return s, nil
}

// origin is a record of a zone and the configuration field it comes from.
type origin struct {
	path string
	rr   dns.RR
}

// occluded reports the records of the zone apex that Detour would never answer because a
// delegation hides them (RFC 2181 §6, RFC 9471 §2): every query for a name below a zone cut,
// or at it, gets the referral. Only the cut's NS and DS records, and the addresses of the name
// servers its NS records name at or below it (the glue the referral carries), are served
// there. Wildcards below a delegation are checkRRsets' to report.
func occluded(apex string, names map[string]map[uint16][]dns.RR, origins []origin) []string {
	var problems []string
	for _, o := range origins {
		name, t := o.rr.Header().Name, o.rr.Header().Rrtype
		cut := delegationOf(apex, name, names)
		if cut == "" || strings.HasPrefix(name, "*.") {
			continue
		}
		glue := (t == dns.TypeA || t == dns.TypeAAAA) && slices.ContainsFunc(names[cut][dns.TypeNS], func(rr dns.RR) bool {
			return strings.EqualFold(rr.(*dns.NS).Ns, name)
		})
		shown, shownCut := strings.TrimSuffix(name, "."), strings.TrimSuffix(cut, ".")
		switch {
		case glue:
		case name == cut && (t == dns.TypeNS || t == dns.TypeDS):
		case name == cut:
			problems = append(problems, fmt.Sprintf("%s: the %s record of %q stands at the delegation %s (%s), which is answered with a referral: it would never be answered",
				o.path, dns.TypeToString[t], shown, shownCut, nsOrigin(cut, origins)))
		case t == dns.TypeA || t == dns.TypeAAAA:
			problems = append(problems, fmt.Sprintf("%s: %q is below the delegation %s (%s) and is none of its name servers: it would never be answered",
				o.path, shown, shownCut, nsOrigin(cut, origins)))
		default:
			problems = append(problems, fmt.Sprintf("%s: %q is below the delegation %s (%s): it would never be answered",
				o.path, shown, shownCut, nsOrigin(cut, origins)))
		}
	}
	return problems
}

// delegationOf returns the zone cut at or above name nearest the apex (a name below the apex
// with NS records), whose referral every query for name gets, or "".
func delegationOf(apex, name string, names map[string]map[uint16][]dns.RR) string {
	cut := ""
	for p := name; p != "" && p != apex && config.InZone(p, apex); p = Parent(p) {
		if names[p][dns.TypeNS] != nil {
			cut = p
		}
	}
	return cut
}

// nsOrigin returns the field of the first NS record of the cut.
func nsOrigin(cut string, origins []origin) string {
	for _, o := range origins {
		if o.rr.Header().Name == cut && o.rr.Header().Rrtype == dns.TypeNS {
			return o.path
		}
	}
	return "its NS records"
}

// failClosedUnderWildcards reports the fail_closed apps of zone sz that a wildcard would answer
// on a server that loads z from Detour, by transfer or push: with every endpoint down Detour
// answers such an app's name with no address, and neither can carry a name without records,
// so the wildcard answers for it there (RFC 4592 §2.2.2). The zone's other apps' names exist
// beside its static names, as their answers always hold records; so do those of apps with
// ingress edges, which always answer a CNAME.
func failClosedUnderWildcards(c *config.Config, sz *staticZone) []string {
	z, names := sz.cfg, sz.names
	mayVanish := func(a *config.App) bool {
		return a.WhenAllDown == config.FailClosed && len(a.Ingress) == 0 && a.PrimaryEdge == ""
	}
	var closed []int
	for _, j := range sz.apps {
		if mayVanish(&c.Apps[j]) {
			closed = append(closed, j)
		}
	}
	if len(closed) == 0 {
		return nil
	}
	// Every name that exists without the fail_closed apps, empty non-terminals included.
	exists := map[string]bool{}
	add := func(name string) {
		for p := name; p != "" && !exists[p] && config.InZone(p, z.Name); p = Parent(p) {
			exists[p] = true
		}
	}
	for name := range names {
		add(name)
	}
	for _, j := range sz.apps {
		if !mayVanish(&c.Apps[j]) {
			add(c.Apps[j].FQDN)
		}
	}
	var problems []string
	for _, j := range closed {
		name := c.Apps[j].FQDN
		if exists[name] {
			continue
		}
		p := name
		for !exists[p] && p != z.Name {
			p = Parent(p)
		}
		if w := "*." + p; names[w] != nil {
			problems = append(problems, fmt.Sprintf("apps[%d].when_all_down: with every endpoint down, fail_closed answers %q with no address, but a zone transfer or push cannot carry a name without records: the secondaries of zone %q would answer it from the wildcard %q (RFC 4592 §2.2.2); use fail_open, or move the app from under the wildcard",
				j, strings.TrimSuffix(name, "."), strings.TrimSuffix(z.Name, "."), strings.TrimSuffix(w, ".")))
		}
	}
	return problems
}

// checkRRsets reports what a zone's names hold that secondaries refuse: a CNAME beside other
// data or twice at one name (RFC 1034 §3.6.2, RFC 2181 §10.1), RRsets with mixed TTLs (RFC
// 2181 §5.2), and wildcards below a delegation, which are never answered.
func checkRRsets(path string, names map[string]map[uint16][]dns.RR) []string {
	var problems []string
	for _, name := range slices.SortedFunc(maps.Keys(names), Compare) {
		sets := names[name]
		shown := strings.TrimSuffix(name, ".")
		if c, ok := sets[dns.TypeCNAME]; ok && len(sets) > 1 {
			problems = append(problems, fmt.Sprintf("%s.records: %q has a CNAME and other records", path, shown))
		} else if len(c) > 1 {
			problems = append(problems, fmt.Sprintf("%s.records: %q has %d CNAME records; a name is an alias of one name", path, shown, len(c)))
		}
		for _, t := range slices.Sorted(maps.Keys(sets)) {
			rrs := sets[t]
			for _, rr := range rrs[1:] {
				if rr.Header().Ttl != rrs[0].Header().Ttl {
					problems = append(problems, fmt.Sprintf("%s.records: %q has %s records with TTLs %d and %d; one RRset has one TTL (RFC 2181 §5.2)",
						path, shown, dns.TypeToString[t], rrs[0].Header().Ttl, rr.Header().Ttl))
					break
				}
			}
		}
		if strings.HasPrefix(name, "*.") {
			for p := name; ; {
				rest := Parent(p)
				if rest == "" || names[rest] != nil && names[rest][dns.TypeSOA] != nil {
					break
				}
				if names[rest] != nil && names[rest][dns.TypeNS] != nil {
					problems = append(problems, fmt.Sprintf("%s.records: wildcard %q lies below the delegation %q and is never answered", path, shown, strings.TrimSuffix(rest, ".")))
					break
				}
				p = rest
			}
		}
	}
	return problems
}

// checkChains reports the CNAME chains of the static records that come back to a name they
// passed, wildcards included.
func (s *Static) checkChains() []string {
	zones := s.Project(state.NewView(), nil)
	find := func(name string) *Node {
		for _, z := range zones {
			if config.InZone(name, z.Name) {
				if n := z.Match(name); n != nil {
					return n
				}
			}
		}
		return nil
	}
	var problems []string
	reported := map[string]bool{}
	for _, z := range zones {
		for _, name := range z.Names() {
			n := z.Nodes.Get(name)
			if len(n.RRsets[dns.TypeCNAME]) == 0 {
				continue
			}
			if strings.HasPrefix(name, "*.") {
				// A wildcard's chain starts at a name it synthesizes: its own target, say.
				name = n.RRsets[dns.TypeCNAME][0].(*dns.CNAME).Target
				if n = find(name); n == nil {
					continue
				}
			}
			var chain []string
			for n != nil && len(n.RRsets[dns.TypeCNAME]) > 0 && !reported[name] {
				if i := slices.Index(chain, name); i >= 0 {
					var shown []string
					for _, l := range append(chain[i:], name) {
						reported[l] = true
						shown = append(shown, strings.TrimSuffix(l, "."))
					}
					problems = append(problems, "zones: CNAME loop "+strings.Join(shown, " → "))
					break
				}
				chain = append(chain, name)
				name = n.RRsets[dns.TypeCNAME][0].(*dns.CNAME).Target
				n = find(name)
			}
		}
	}
	return problems
}

// parseRecord reads one record in zone-file syntax, relative names taken from the zone.
func parseRecord(text string, z *config.Zone) (dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), z.Name, "")
	zp.SetDefaultTTL(z.TTL)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse %q: %w", text, err)
	}
	if !ok || rr == nil {
		return nil, fmt.Errorf("%q holds no record", text)
	}
	if _, more := zp.Next(); more {
		return nil, fmt.Errorf("%q holds more than one record", text)
	}
	// Names compare case-insensitively (RFC 4343), however escaped: the owner is stored
	// canonical, as queries are asked, and so are the names the answers follow (canonicalData).
	rr.Header().Name = Canonical(rr.Header().Name)
	canonicalData(rr)
	name := rr.Header().Name
	if !config.InZone(name, z.Name) {
		return nil, fmt.Errorf("%q lies outside zone %q", strings.TrimSuffix(name, "."), strings.TrimSuffix(z.Name, "."))
	}
	if labels := dns.SplitDomainName(name); slices.Contains(labels[min(1, len(labels)):], "*") {
		return nil, fmt.Errorf("%q: a * label is a wildcard only leftmost (RFC 4592 §2.1.1); elsewhere it is served as nothing", text)
	}
	switch rr.Header().Rrtype {
	case dns.TypeNS, dns.TypeDNAME:
		if strings.HasPrefix(name, "*.") {
			return nil, fmt.Errorf("%q: a wildcard %s record is not served (RFC 4592 §4.2, §4.4)", text, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	switch rr.Header().Rrtype {
	case dns.TypeDNAME:
		return nil, fmt.Errorf("%q: DNAME records are not served; use CNAME records", text)
	case dns.TypeSOA:
		return nil, fmt.Errorf("%q: the SOA record is Detour's own", text)
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR:
		return nil, fmt.Errorf("%q: type %s cannot be a zone record", text, dns.TypeToString[rr.Header().Rrtype])
	}
	if rr.Header().Class != dns.ClassINET {
		return nil, fmt.Errorf("%q: only class IN is served", text)
	}
	// The parser takes some data that no message can hold (an odd number of hex digits, an SVCB
	// key twice, an ALPN id over 255 bytes): every answer holding the record would fail to be
	// written, and so would every transfer of the zone, which no secondary could then load.
	if _, err := dns.PackRR(rr, make([]byte, dns.Len(rr)), 0, nil, false); err != nil {
		return nil, fmt.Errorf("%q: its data cannot be written in a DNS message, so no answer or zone transfer could carry it: %v", text, err)
	}
	return rr, nil
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// addressRR is the A or AAAA record of ip at name.
func addressRR(name string, ttl uint32, ip netip.Addr) dns.RR {
	ip = ip.Unmap()
	if ip.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()}
}

// AddressRRs are the A or AAAA records of addrs at name.
func AddressRRs(name string, ttl uint32, addrs []netip.Addr) []dns.RR {
	out := make([]dns.RR, 0, len(addrs))
	for _, ip := range addrs {
		out = append(out, addressRR(name, ttl, ip))
	}
	return out
}

func addRR(names map[string]map[uint16][]dns.RR, rr dns.RR) {
	h := rr.Header()
	sets := names[h.Name]
	if sets == nil {
		sets = map[uint16][]dns.RR{}
		names[h.Name] = sets
	}
	for _, have := range sets[h.Rrtype] {
		if dns.IsDuplicate(have, rr) {
			return
		}
	}
	sets[h.Rrtype] = append(sets[h.Rrtype], rr)
}

// Project returns every zone at the given state, with the serial serials holds for it.
func (s *Static) Project(v *state.View, serials map[string]uint32) []*Zone {
	out := make([]*Zone, 0, len(s.zones))
	for i := range s.zones {
		sz := &s.zones[i]
		z := &Zone{Name: sz.cfg.Name, Config: sz.cfg, Serial: serials[sz.cfg.Name], Nodes: newNodes(len(sz.names) + len(sz.apps)), version: versions.Add(1)}
		z.SOA = &dns.SOA{
			Hdr: hdr(z.Name, dns.TypeSOA, sz.cfg.TTL), Ns: sz.cfg.Nameservers[0].Name, Mbox: sz.cfg.Hostmaster,
			Serial: z.Serial, Refresh: 3600, Retry: 600, Expire: 604800, Minttl: sz.cfg.NegativeTTL,
		}
		for name, sets := range sz.names {
			n := z.node(name)
			n.RRsets = sets
			if name == z.Name {
				withSOA := make(map[uint16][]dns.RR, len(sets))
				for t, rrs := range sets {
					withSOA[t] = rrs
				}
				withSOA[dns.TypeSOA] = []dns.RR{z.SOA}
				n.RRsets = withSOA
			}
		}
		for _, j := range sz.apps {
			a := &s.cfg.Apps[j]
			ans := Decide(s.cfg, a, v)
			n := z.node(a.FQDN)
			n.App, n.AppTTL = &ans, a.TTL
		}
		out = append(out, z)
	}
	return out
}

// node returns the node of name, creating it and its empty non-terminal ancestors.
func (z *Zone) node(name string) *Node {
	if n := z.Nodes.Get(name); n != nil {
		return n
	}
	n := &Node{Name: name}
	z.Nodes.set(name, n)
	for p := name; p != z.Name; {
		rest := Parent(p)
		if rest == "" || !config.InZone(rest, z.Name) {
			break
		}
		if z.Nodes.Get(rest) == nil {
			z.Nodes.set(rest, &Node{Name: rest})
		}
		p = rest
	}
	return n
}

// Lookup returns the node of the canonical name, or nil.
func (z *Zone) Lookup(name string) *Node { return z.Nodes.Get(name) }

// Match returns the node that answers the canonical name: its own, else the one a wildcard
// synthesizes for it (RFC 4592: the wildcard child of the closest encloser, the nearest
// existing ancestor, empty non-terminals included), else nil.
func (z *Zone) Match(name string) *Node {
	n, _ := z.match(name, nil)
	return n
}

// MatchWildcard is Match that also returns the owner name of the wildcard that synthesized the
// node, or "" when the node is the name's own.
func (z *Zone) MatchWildcard(name string) (n *Node, wildcard string) { return z.match(name, nil) }

// MatchAdditional is Match for the records additional data takes of a target: its A and AAAA
// records, and its SVCB or HTTPS records too when svcb is that type (RFC 9460 §4.1 adds them
// beside the addresses of an SVCB or HTTPS record's target). Of a node a wildcard synthesizes
// it copies only those, as additional data needs no more.
func (z *Zone) MatchAdditional(name string, svcb uint16) *Node {
	types := addressTypes
	switch svcb {
	case dns.TypeSVCB:
		types = svcbTypes
	case dns.TypeHTTPS:
		types = httpsTypes
	}
	n, _ := z.match(name, types)
	return n
}

// addressTypes are the types of a name's addresses; svcbTypes and httpsTypes add those of an
// SVCB and an HTTPS target's own records.
var (
	addressTypes = []uint16{dns.TypeA, dns.TypeAAAA}
	svcbTypes    = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSVCB}
	httpsTypes   = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS}
)

// match is MatchWildcard, a synthesized node holding only the given types when types is not nil.
func (z *Zone) match(name string, types []uint16) (*Node, string) {
	if n := z.Nodes.Get(name); n != nil {
		return n, ""
	}
	for p := name; p != z.Name; {
		rest := Parent(p)
		if rest == "" || !config.InZone(rest, z.Name) {
			return nil, ""
		}
		if z.Nodes.Get(rest) != nil {
			src := z.Nodes.Get("*." + rest)
			if src == nil {
				return nil, ""
			}
			return src.synthesize(name, types), src.Name
		}
		p = rest
	}
	return nil, ""
}

// synthesize returns the node a wildcard answers for name: its records with name as owner, of
// the given types only when types is not nil.
func (n *Node) synthesize(name string, types []uint16) *Node {
	out := &Node{Name: name, RRsets: make(map[uint16][]dns.RR, len(n.RRsets))}
	for t, rrs := range n.RRsets {
		if types != nil && !slices.Contains(types, t) {
			continue
		}
		copies := make([]dns.RR, len(rrs))
		for i, rr := range rrs {
			copies[i] = dns.Copy(rr)
			copies[i].Header().Name = name
		}
		out.RRsets[t] = copies
	}
	return out
}

// Records returns every RRset of the node: its static ones and, for an app, the CNAME or the
// A and AAAA records of every address its answer may give (what a zone transfer carries).
func (n *Node) Records() map[uint16][]dns.RR {
	out := make(map[uint16][]dns.RR, len(n.RRsets)+2)
	for t, rrs := range n.RRsets {
		out[t] = rrs
	}
	if n.App == nil {
		return out
	}
	if n.App.CNAME != "" {
		out[dns.TypeCNAME] = []dns.RR{&dns.CNAME{Hdr: hdr(n.Name, dns.TypeCNAME, n.AppTTL), Target: n.App.CNAME}}
		return out
	}
	if a := n.App.V4.Addresses(); len(a) > 0 {
		out[dns.TypeA] = AddressRRs(n.Name, n.AppTTL, a)
	}
	if a := n.App.V6.Addresses(); len(a) > 0 {
		out[dns.TypeAAAA] = AddressRRs(n.Name, n.AppTTL, a)
	}
	return out
}

// Empty reports whether the node has no records at all (an empty non-terminal).
func (n *Node) Empty() bool { return len(n.Records()) == 0 }

// Names returns the zone's names in canonical DNS order, the apex first.
func (z *Zone) Names() []string {
	names := make([]string, 0, z.Nodes.Len())
	for name := range z.Nodes.All() {
		names = append(names, name)
	}
	SortCanonical(names, func(name string) string { return name })
	return names
}

// Compare orders canonical names as RFC 4034 §6.1 does: label by label from the right.
func Compare(a, b string) int {
	return compareLabels(dns.SplitDomainName(a), dns.SplitDomainName(b))
}

func compareLabels(la, lb []string) int {
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	return len(la) - len(lb)
}

// SortCanonical sorts s stably by the names name gives, in Compare's order, splitting each
// name once rather than at every comparison.
func SortCanonical[T any](s []T, name func(T) string) {
	type item struct {
		labels []string
		v      T
	}
	items := make([]item, len(s))
	for i, v := range s {
		items[i] = item{dns.SplitDomainName(name(v)), v}
	}
	slices.SortStableFunc(items, func(a, b item) int { return compareLabels(a.labels, b.labels) })
	for i := range items {
		s[i] = items[i].v
	}
}

// NegativeSOA is the SOA that NXDOMAIN and NODATA answers carry in their authority section:
// its TTL is the lesser of the SOA's own TTL and its MINIMUM field (RFC 2308 §3).
func (z *Zone) NegativeSOA() *dns.SOA {
	soa := *z.SOA
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return &soa
}

// Config returns the configuration s was compiled from.
func (s *Static) Config() *config.Config { return s.cfg }

// Redecided is an app's answer decided again, to replace its node's.
type Redecided struct {
	FQDN string
	App  *AppAnswer
	TTL  uint32
}

// Redecide decides again, at v, the answers of the apps of z whose indexes in the
// configuration are apps, and returns those that differ from z's. It reads v, not z's nodes
// beyond those apps': Replace makes the new version, without v.
func (s *Static) Redecide(z *Zone, apps []int, v *state.View) []Redecided {
	var out []Redecided
	for _, j := range apps {
		a := &s.cfg.Apps[j]
		old := z.Nodes.Get(a.FQDN)
		if old == nil || old.App == nil {
			continue
		}
		ans := Decide(s.cfg, a, v)
		if ans.Equal(old.App) && old.AppTTL == a.TTL {
			continue
		}
		out = append(out, Redecided{FQDN: a.FQDN, App: &ans, TTL: a.TTL})
	}
	return out
}

// Replace returns z with the answers of changed (from Redecide) in place of its apps' (and
// their fqdns), or z itself when changed is empty. z is not modified: the result shares every
// other node with it and has its own SOA (at z's serial) and apex, ready for a new serial.
func (z *Zone) Replace(changed []Redecided) (*Zone, []string) {
	if len(changed) == 0 {
		return z, nil
	}
	return z.replace(changed)
}

// Restamp returns a new version of z with the same answers, its own SOA (at z's serial) and apex
// ready for a new serial, as Replace makes them: a version that costs what its apex costs.
func (z *Zone) Restamp() *Zone {
	out, _ := z.replace(nil)
	return out
}

func (z *Zone) replace(changed []Redecided) (*Zone, []string) {
	nodes := z.Nodes.next()
	names := make([]string, 0, len(changed))
	for _, c := range changed {
		n := *z.Nodes.Get(c.FQDN)
		n.App, n.AppTTL = c.App, c.TTL
		nodes.set(c.FQDN, &n)
		names = append(names, c.FQDN)
	}
	out := *z
	out.version, out.base = versions.Add(1), z.version
	out.replaced = slices.Clip(names)
	if !slices.Contains(names, z.Name) {
		out.replaced = append(out.replaced, z.Name)
	}
	soa := *z.SOA
	out.SOA = &soa
	apex := *nodes.Get(z.Name)
	apex.RRsets = make(map[uint16][]dns.RR, len(apex.RRsets))
	for t, rrs := range nodes.Get(z.Name).RRsets {
		apex.RRsets[t] = rrs
	}
	apex.RRsets[dns.TypeSOA] = []dns.RR{out.SOA}
	nodes.set(z.Name, &apex)
	out.Nodes = nodes
	return &out, names
}

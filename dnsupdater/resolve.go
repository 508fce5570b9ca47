package dnsupdater

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// picker chooses the variant of an app's answer for the query at hand.
type picker func(a *zone.Answer) int

// resolution is the reference answer to one canonical question: the reply (question in lower
// case, no OPT record), the source answer it depended on, if any, what else than the
// question's own node it read, and the owner name of the wildcard that synthesized the
// question's node, if one did (what response rate limiting keys its answer and NODATA by).
type resolution struct {
	msg      *dns.Msg
	bySource *zone.Answer
	reach    reach
	wildcard string
}

// reach says what a reply read besides the node of its question and its zone's serial (which a
// NODATA reply gets when it is sent): what a new version of the zones must prepare it again for.
type reach uint8

const (
	// ownNode: nothing else; a version prepares the reply again only when it replaced the node.
	ownNode reach = iota
	// ownZone: the zone's SOA or an app's answer in the question's zone, which any version of
	// that zone may change.
	ownZone
	// otherZones: the data of another zone, which a version may change while the question's
	// zone stays as it was.
	otherZones
)

// read notes that the reply to a question of zone from read data of zone z that may change
// without the question's node changing: z's SOA, or an app's answer, or anything of another zone.
func (r *resolution) read(from, z *zone.Zone) {
	if z != from {
		r.reach = otherZones
	} else {
		r.reach = max(r.reach, ownZone)
	}
}

// zoneFor returns the most specific zone holding the canonical name, or nil.
func (t *table) zoneFor(name string) *zone.Zone {
	var best *zone.Zone
	for _, z := range t.zones {
		if config.InZone(name, z.Name) && (best == nil || len(z.Name) > len(best.Name)) {
			best = z
		}
	}
	return best
}

// zoneAnswering returns the zone that answers a question for the canonical name of type qtype,
// or nil: the most specific zone holding the name, except that a DS question for the apex of a
// zone goes to the zone holding its parent name when Detour serves one, as the DS RRset lives
// on the parent side of the cut (RFC 4035 §3.1.4.1); Knot and BIND answer so too.
func (t *table) zoneAnswering(name string, qtype uint16) *zone.Zone {
	z := t.zoneFor(name)
	if qtype != dns.TypeDS || z == nil || z.Name != name {
		return z
	}
	if parent := t.parentZone(name); parent != nil {
		return parent
	}
	return z
}

// parentZone returns the most specific zone holding the parent of the canonical name, or nil.
func (t *table) parentZone(name string) *zone.Zone {
	if parent := zone.Parent(name); parent != "" {
		return t.zoneFor(parent)
	}
	return nil
}

// resolve answers one question of class IN as an authoritative server does. The question name
// must be canonical (lower case, fully qualified). AXFR and IXFR are not questions here.
func (t *table) resolve(id uint16, q dns.Question, pick picker) resolution {
	m := new(dns.Msg)
	m.Id = id
	m.Response = true
	m.Question = []dns.Question{q}
	m.Compress = true
	z := t.zoneAnswering(q.Name, q.Qtype)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return resolution{msg: m}
	}
	m.Authoritative = true
	if cut := delegation(z, q.Name); cut != nil && !(q.Name == cut.Name && q.Qtype == dns.TypeDS) {
		m.Authoritative = false
		m.Ns = cut.RRsets[dns.TypeNS]
		r := resolution{msg: m}
		m.Extra = t.referral(&r, z, z, cut)
		return r
	}
	n, wildcard := z.MatchWildcard(q.Name)
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.NegativeSOA()}
		return resolution{msg: m}
	}
	r := resolution{msg: m, wildcard: wildcard}
	if n.Name == z.Name {
		r.read(z, z) // the apex: its SOA is an answer
	}
	qtype := q.Qtype
	if qtype == dns.TypeANY {
		qtype = minimalAnyType(n)
		if qtype == 0 {
			m.Ns = []dns.RR{z.NegativeSOA()}
			return r
		}
	}
	switch {
	case n.App != nil && n.App.CNAME != "" && besideCNAME(qtype):
	case n.App != nil && n.App.CNAME != "":
		cname := &dns.CNAME{Hdr: dns.RR_Header{Name: n.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: n.AppTTL}, Target: n.App.CNAME}
		m.Answer = []dns.RR{cname}
		if qtype != dns.TypeCNAME {
			t.chase(&r, z, cname, qtype, pick)
		}
		return r
	case n.App != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA):
		m.Answer, r.bySource = appAddresses(n, qtype, pick)
	case len(n.RRsets[qtype]) > 0:
		m.Answer = n.RRsets[qtype]
		m.Extra = t.additional(&r, z, z, m.Answer, false)
	case len(n.RRsets[dns.TypeCNAME]) > 0 && !besideCNAME(qtype):
		m.Answer = slices.Clone(n.RRsets[dns.TypeCNAME])
		t.chase(&r, z, m.Answer[0].(*dns.CNAME), qtype, pick)
		return r
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{z.NegativeSOA()}
	}
	return r
}

// besideCNAME reports whether qtype is a type that may stand beside a CNAME, RRSIG and NSEC
// (RFC 2181 §10.1, RFC 4035 §2.5): a question for it is answered by the name itself, not
// restarted at the CNAME's target. Detour signs nothing, so such a question is NODATA there.
func besideCNAME(qtype uint16) bool {
	return qtype == dns.TypeRRSIG || qtype == dns.TypeNSEC
}

// appAddresses returns the A or AAAA records (qtype) that n, the name of an app with addresses,
// answers: the variant pick chooses. bySource is the answer when it picks by the client's
// address, whose rules the ECS scope reports.
func appAddresses(n *zone.Node, qtype uint16, pick picker) (rrs []dns.RR, bySource *zone.Answer) {
	ans := &n.App.V4
	if qtype == dns.TypeAAAA {
		ans = &n.App.V6
	}
	if ans.Pick == zone.PickSource {
		bySource = ans
	}
	if i := pick(ans); i >= 0 {
		rrs = zone.AddressRRs(n.Name, n.AppTTL, ans.Variants[i])
	}
	return rrs, bySource
}

// minimalAnyType is the one RRset type an ANY query gets (RFC 8482), or 0 when the name has
// none.
func minimalAnyType(n *zone.Node) uint16 {
	recs := n.Records()
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME} {
		if len(recs[t]) > 0 {
			return t
		}
	}
	var types []uint16
	for t := range recs {
		types = append(types, t)
	}
	if len(types) == 0 {
		return 0
	}
	return slices.Min(types)
}

// chase follows the CNAME chain that starts with c (already in r's answer, to a question of
// zone from) through the zones Detour serves, as RFC 1034 §4.3.2 does: it adds the records of
// type qtype at its end, and at an app's name with addresses the ones a query for that name
// gets (the variant pick chooses, as step 3a restarts the query there); a chain that ends at a
// name without them takes that name's rcode and its zone's SOA (RFC 2308, RFC 6604); one that
// enters a delegation ends in a referral (RFC 2181 §6.1), unless it asks for the DS at the cut,
// which the parent answers (RFC 4035 §3.1.4.1); one that leaves the served zones or
// comes back to a name already answered stops there. The AA bit stays as the first name
// decided it. Additional data, a referral's included, is that of the zone the chain reached.
func (t *table) chase(r *resolution, from *zone.Zone, c *dns.CNAME, qtype uint16, pick picker) {
	m := r.msg
	for {
		target := c.Target
		for _, rr := range m.Answer {
			if rr.Header().Name == target {
				return // a loop: every record of it is in the answer once
			}
		}
		z := t.zoneAnswering(target, qtype) // a DS question restarted at a child's apex is its parent's
		if z == nil {
			return
		}
		r.read(from, z)
		if cut := delegation(z, target); cut != nil && !(target == cut.Name && qtype == dns.TypeDS) {
			m.Ns = cut.RRsets[dns.TypeNS]
			m.Extra = t.referral(r, from, z, cut)
			return
		}
		n := z.Match(target)
		if n == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.NegativeSOA()}
			return
		}
		if n.App != nil && n.App.CNAME == "" && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
			rrs, bySource := appAddresses(n, qtype, pick)
			r.bySource = bySource
			if len(rrs) == 0 {
				m.Ns = []dns.RR{z.NegativeSOA()}
				return
			}
			m.Answer = append(m.Answer, rrs...)
			return
		}
		recs := n.Records()
		if rrs := recs[qtype]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			m.Extra = t.additional(r, from, z, rrs, false)
			return
		}
		next := recs[dns.TypeCNAME]
		if len(next) == 0 || besideCNAME(qtype) {
			m.Ns = []dns.RR{z.NegativeSOA()}
			return
		}
		m.Answer = append(m.Answer, next...)
		c = next[0].(*dns.CNAME)
	}
}

// delegation returns the node of the zone cut above or at name (a name below the apex with NS
// records), or nil.
func delegation(z *zone.Zone, name string) *zone.Node {
	var cut *zone.Node
	for p := name; p != z.Name && config.InZone(p, z.Name); {
		if n := z.Lookup(p); n != nil && len(n.RRsets[dns.TypeNS]) > 0 {
			cut = n
		}
		rest := zone.Parent(p)
		if rest == "" {
			break
		}
		p = rest
	}
	return cut
}

// additional returns the A and AAAA records Detour serves for the names the NS, MX, SRV, SVCB
// and HTTPS records rrs of zone of point to (RFC 1035 §4.3.2 step 6, RFC 2782, RFC 9460 §4.1),
// after each SVCB or HTTPS target's addresses its own records of the type, in an answer to a
// question of zone from (noted in r) or in its referral (rrs the NS records of a cut), as other
// authoritative servers add them, Knot among them: those a wildcard synthesizes for the name too
// (RFC 4592), and the glue of a name below a delegation of zone of (another zone's glue is that
// zone's referral, not of's data to give). The glue of name servers at or below the cut of the
// NS records comes first, as in Knot's replies: a resolver can ask for the other addresses, but
// for those only the delegated zone's servers. In a referral it is the glue RFC 9471 §3.1 asks
// for, and the rest the sibling glue and other addresses §3.2 and RFC 1034 §4.3.2 step 3b let it
// carry, which Knot gives too. An app's name adds the addresses every query for it gets alike
// (an answer of one variant), and nothing where the answer depends on the client, the draw or
// the turn: a resolver would keep one client's variant for every client, and the ECS scope of
// the whole reply would have to narrow for it. Additional data is optional (RFC 2181 §9): such a
// target is asked for on its own.
//
// A referral (referral set, rrs the NS records of a cut of zone of) carries the addresses of zone
// of alone, as Knot's do: a resolver takes nothing from a referral beyond the zone it asked. They
// are looked up in zone of even where another served zone is more specific: the glue zone of
// holds below its delegation to that zone is its own data, which Knot serving both zones gives.
func (t *table) additional(r *resolution, from, of *zone.Zone, rrs []dns.RR, referral bool) []dns.RR {
	var glue, out []dns.RR
	for _, tg := range targets(rrs) {
		z := of
		if !referral {
			z = t.zoneFor(tg.name)
		}
		if z == nil || !config.InZone(tg.name, z.Name) {
			continue
		}
		below := delegation(z, tg.name) != nil
		if below && z != of {
			continue // another zone's glue: that zone refers the name, as Knot leaves it out
		}
		n := z.MatchAdditional(tg.name, tg.svcb)
		if n == nil {
			continue
		}
		if n.App != nil || z != from {
			r.read(from, z)
		}
		if n.App == nil {
			addrs := &out
			if below && tg.ns && config.InZone(tg.name, tg.owner) {
				addrs = &glue
			}
			*addrs = append(*addrs, n.RRsets[dns.TypeA]...)
			*addrs = append(*addrs, n.RRsets[dns.TypeAAAA]...)
			if tg.svcb != 0 {
				*addrs = append(*addrs, n.RRsets[tg.svcb]...)
			}
			continue
		}
		for _, a := range []*zone.Answer{&n.App.V4, &n.App.V6} {
			if n.App.CNAME == "" && len(a.Variants) == 1 {
				out = append(out, zone.AddressRRs(n.Name, n.AppTTL, a.Variants[0])...)
			}
		}
	}
	return append(glue, out...)
}

// referralExtra is the additional section of a referral at one cut (see additional); app says
// that it holds an app's addresses.
type referralExtra struct {
	rrs []dns.RR
	app bool
}

// referral returns the additional section of a referral at cut, a delegation of zone of, to a
// question of zone from (noted in r). It is made once per table and cut: every query for a name
// below a cut is a referral answered by the reference path, and making it took half of such a
// reply's time (12.6–15.5 against 6.3–7.7 µs for a cut of 12 name servers).
func (t *table) referral(r *resolution, from, of *zone.Zone, cut *zone.Node) []dns.RR {
	v, ok := t.referrals.Load(cut)
	if !ok {
		var own resolution
		rrs := t.additional(&own, of, of, cut.RRsets[dns.TypeNS], true)
		// Clipped: the caller appends the OPT record to a copy, never to the shared array.
		v, _ = t.referrals.LoadOrStore(cut, &referralExtra{rrs: slices.Clip(rrs), app: own.reach > ownNode})
	}
	x := v.(*referralExtra)
	if x.app {
		r.read(from, of)
	}
	return x.rrs
}

// target is a name an NS, MX, SRV, SVCB or HTTPS record points to.
type target struct {
	name string
	// owner is the record's owner name, and ns says that it is an NS record; svcb is the type of
	// an SVCB or HTTPS record, whose target's records of that type are additional data too.
	owner string
	ns    bool
	svcb  uint16
	// rdata is the record's data as RFC 4034 §6.3 orders an RRset by: in wire form, uncompressed,
	// its names as they are stored (an NS, MX or SRV target in lower case, an SVCB target as
	// written).
	rdata []byte
}

// targets returns the names the NS, MX, SRV, SVCB and HTTPS records of rrs point to, each once,
// in the order of their records' data (RFC 4034 §6.3): the order Knot keeps an RRset in and adds
// the addresses of its targets in, which decides those that a reply too large for its client
// leaves out. The target "." of an SVCB or HTTPS record (the owner's own name, RFC 9460 §2.5)
// names no other name: Knot adds nothing for it.
func targets(rrs []dns.RR) []target {
	out := make([]target, 0, len(rrs))
	for _, rr := range rrs {
		var tg target
		switch rr := rr.(type) {
		case *dns.NS:
			tg.name = rr.Ns
		case *dns.MX:
			tg.name, tg.rdata = rr.Mx, binary.BigEndian.AppendUint16(nil, rr.Preference)
		case *dns.SRV:
			tg.name = rr.Target
			for _, v := range []uint16{rr.Priority, rr.Weight, rr.Port} {
				tg.rdata = binary.BigEndian.AppendUint16(tg.rdata, v)
			}
		case *dns.SVCB, *dns.HTTPS:
			// The target is kept as written (RFC 4034 §6.2 lowers no name of these types), and
			// the whole data orders the RRset: the parameters too.
			if tg.rdata = rdataWire(rr); tg.rdata == nil {
				continue
			}
			tg.svcb = rr.Header().Rrtype
			tg.name = zone.Canonical(svcbTarget(rr))
			if tg.name == "." {
				continue
			}
			out = append(out, tg)
			continue
		default:
			continue
		}
		wire, _ := wireName(tg.name)
		tg.rdata = append(tg.rdata, wire...)
		tg.owner, tg.ns = rr.Header().Name, rr.Header().Rrtype == dns.TypeNS
		out = append(out, tg)
	}
	slices.SortStableFunc(out, func(a, b target) int { return bytes.Compare(a.rdata, b.rdata) })
	once := out[:0]
	for _, tg := range out {
		if !slices.ContainsFunc(once, func(o target) bool { return o.name == tg.name }) {
			once = append(once, tg)
		}
	}
	return once
}

// svcbTarget returns the TargetName of an SVCB or HTTPS record.
func svcbTarget(rr dns.RR) string {
	if h, ok := rr.(*dns.HTTPS); ok {
		return h.Target
	}
	return rr.(*dns.SVCB).Target
}

// rdataWire returns the data of rr in wire form, uncompressed, or nil when it does not pack.
// It packs a copy: dns.PackRR writes the Rdlength of the record it packs, and rr is the zone's,
// which every socket's and connection's goroutine reads at once.
func rdataWire(rr dns.RR) []byte {
	buf := make([]byte, dns.Len(rr))
	end, err := dns.PackRR(dns.Copy(rr), buf, 0, nil, false)
	if err != nil {
		return nil
	}
	owner, err := dns.PackDomainName(rr.Header().Name, buf, 0, nil, false)
	if err != nil || owner+10 > end {
		return nil
	}
	return buf[owner+10 : end]
}

// clientOf returns the address the source policy matches: the EDNS Client Subnet when the query
// carries one with a non-zero source prefix, else the client's address.
func clientOf(remote netip.Addr, ecs netip.Addr, ecsBits uint8) netip.Addr {
	if ecs.IsValid() && ecsBits > 0 {
		return ecs
	}
	return remote.Unmap()
}

package dnsupdater

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// picker chooses the variant of an app's answer for the query at hand.
type picker func(a *zone.Answer) int

// resolution is the reference answer to one canonical question: the reply (question in lower
// case, no OPT record) and the source answer it depended on, if any.
type resolution struct {
	msg      *dns.Msg
	bySource *zone.Answer
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

// resolve answers one question of class IN as an authoritative server does. The question name
// must be canonical (lower case, fully qualified). AXFR and IXFR are not questions here.
func (t *table) resolve(id uint16, q dns.Question, pick picker) resolution {
	m := new(dns.Msg)
	m.Id = id
	m.Response = true
	m.Question = []dns.Question{q}
	m.Compress = true
	z := t.zoneFor(q.Name)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return resolution{msg: m}
	}
	m.Authoritative = true
	if cut := delegation(z, q.Name); cut != nil && !(q.Name == cut.Name && q.Qtype == dns.TypeDS) {
		m.Authoritative = false
		m.Ns = cut.RRsets[dns.TypeNS]
		m.Extra = glue(t, m.Ns, cut.Name)
		return resolution{msg: m}
	}
	n := z.Match(q.Name)
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.NegativeSOA()}
		return resolution{msg: m}
	}
	var r resolution
	r.msg = m
	qtype := q.Qtype
	if qtype == dns.TypeANY {
		qtype = minimalAnyType(n)
		if qtype == 0 {
			m.Ns = []dns.RR{z.NegativeSOA()}
			return r
		}
	}
	switch {
	case n.App != nil && n.App.CNAME != "":
		cname := &dns.CNAME{Hdr: dns.RR_Header{Name: n.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: n.AppTTL}, Target: n.App.CNAME}
		m.Answer = []dns.RR{cname}
		if qtype != dns.TypeCNAME {
			t.chase(m, cname, qtype)
		}
		return r
	case n.App != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA):
		ans := &n.App.V4
		if qtype == dns.TypeAAAA {
			ans = &n.App.V6
		}
		if ans.Pick == zone.PickSource {
			r.bySource = ans
		}
		if i := pick(ans); i >= 0 {
			m.Answer = zone.AddressRRs(n.Name, n.AppTTL, ans.Variants[i])
		}
	case len(n.RRsets[qtype]) > 0:
		m.Answer = n.RRsets[qtype]
		m.Extra = t.additional(m.Answer)
	case len(n.RRsets[dns.TypeCNAME]) > 0:
		m.Answer = slices.Clone(n.RRsets[dns.TypeCNAME])
		t.chase(m, m.Answer[0].(*dns.CNAME), qtype)
		return r
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{z.NegativeSOA()}
	}
	return r
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

// chase follows the CNAME chain that starts with c (already in m's answer) through the zones
// Detour serves, as RFC 1034 §4.3.2 does: it adds the records of type qtype at its end; a
// chain that ends at a name without them takes that name's rcode and its zone's SOA (RFC 2308,
// RFC 6604); one that enters a delegation ends in a referral (RFC 2181 §6.1); one that leaves
// the served zones or comes back to a name already answered stops there. The AA bit stays as
// the first name decided it.
func (t *table) chase(m *dns.Msg, c *dns.CNAME, qtype uint16) {
	for {
		target := c.Target
		for _, rr := range m.Answer {
			if rr.Header().Name == target {
				return // a loop: every record of it is in the answer once
			}
		}
		z := t.zoneFor(target)
		if z == nil {
			return
		}
		if cut := delegation(z, target); cut != nil {
			m.Ns = cut.RRsets[dns.TypeNS]
			m.Extra = glue(t, m.Ns, cut.Name)
			return
		}
		n := z.Match(target)
		if n == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.NegativeSOA()}
			return
		}
		recs := n.Records()
		if rrs := recs[qtype]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			m.Extra = t.additional(rrs)
			return
		}
		next := recs[dns.TypeCNAME]
		if len(next) == 0 {
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
		_, rest, ok := strings.Cut(p, ".")
		if !ok || rest == "" {
			break
		}
		p = rest
	}
	return cut
}

// additional returns the A and AAAA records Detour serves for the names the NS, MX and SRV
// records of an answer point to (RFC 1035 §4.3.2 step 6, RFC 2782), as other authoritative
// servers add them.
func (t *table) additional(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	var seen []string
	for _, rr := range rrs {
		var target string
		switch rr := rr.(type) {
		case *dns.NS:
			target = rr.Ns
		case *dns.MX:
			target = rr.Mx
		case *dns.SRV:
			target = rr.Target
		default:
			continue
		}
		target = strings.ToLower(target)
		if slices.Contains(seen, target) {
			continue
		}
		seen = append(seen, target)
		z := t.zoneFor(target)
		if z == nil || delegation(z, target) != nil {
			continue
		}
		if n := z.Lookup(target); n != nil {
			recs := n.Records()
			out = append(out, recs[dns.TypeA]...)
			out = append(out, recs[dns.TypeAAAA]...)
		}
	}
	return out
}

// glue returns the A and AAAA records Detour serves for the targets of the NS records. Below a
// zone cut (cut set) only targets inside the cut are glue.
func glue(t *table, ns []dns.RR, cut string) []dns.RR {
	var out []dns.RR
	for _, rr := range ns {
		target := rr.(*dns.NS).Ns
		z := t.zoneFor(target)
		if z == nil || (cut != "" && !config.InZone(target, cut)) {
			continue
		}
		n := z.Lookup(target)
		if n == nil {
			continue
		}
		recs := n.RRsets
		out = append(out, recs[dns.TypeA]...)
		out = append(out, recs[dns.TypeAAAA]...)
	}
	return out
}

// clientOf returns the address the source policy matches: the EDNS Client Subnet when the query
// carries one with a non-zero source prefix, else the client's address.
func clientOf(remote netip.Addr, ecs netip.Addr, ecsBits uint8) netip.Addr {
	if ecs.IsValid() && ecsBits > 0 {
		return ecs
	}
	return remote.Unmap()
}

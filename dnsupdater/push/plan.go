package push

import (
	"maps"
	"slices"
	"strings"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// ownedTypes are the types Detour may hold at a name it owns.
var ownedTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME}

// Owned returns the RRsets Detour owns in z: the records of every app whose name lies in it and
// the addresses of every edge hostname in it. Every owned type of such a name is present, empty
// where Detour answers none (a fail_closed app with every pool down), so that a push rewriting
// the name empties it on the primary too.
func Owned(c *config.Config, z *zone.Zone) map[zone.Key][]dns.RR {
	out := map[zone.Key][]dns.RR{}
	add := func(name string) {
		n := z.Lookup(name)
		if n == nil {
			return
		}
		recs := n.Records()
		for _, t := range ownedTypes {
			out[zone.Key{Name: name, Type: t}] = recs[t]
		}
	}
	for i := range c.Apps {
		if config.InZone(c.Apps[i].FQDN, z.Name) {
			add(c.Apps[i].FQDN)
		}
	}
	for i := range c.Edges {
		if config.InZone(c.Edges[i].Hostname, z.Name) {
			add(c.Edges[i].Hostname)
		}
	}
	return out
}

// Update returns the UPDATE for zoneName that turns the RRsets pushed before into want, and how
// many RRsets it removes or replaces; nil when nothing differs. A name of want that before does
// not hold (every name, with before nil: what the primary holds is unknown; or an app a reload
// added, whose name may hold the primary's own records) is rewritten whole: each type Detour
// may own there is removed, then want's records are added.
func Update(zoneName string, before, want map[zone.Key][]dns.RR) (*dns.Msg, int) {
	var remove, insert []zone.Key
	held := map[string]bool{}
	for k := range before {
		held[k.Name] = true
	}
	fresh := map[string]bool{}
	for k, rrs := range want {
		switch {
		case !held[k.Name]:
			fresh[k.Name] = true
		case !sameRRset(before[k], rrs):
			remove, insert = append(remove, k), append(insert, k)
		}
	}
	for name := range fresh {
		for _, t := range ownedTypes {
			k := zone.Key{Name: name, Type: t}
			remove = append(remove, k)
			if len(want[k]) > 0 {
				insert = append(insert, k)
			}
		}
	}
	for k := range before {
		if _, ok := want[k]; !ok {
			remove = append(remove, k)
		}
	}
	if len(remove) == 0 {
		return nil, 0
	}
	order := func(a, b zone.Key) int {
		if c := zone.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Type) - int(b.Type)
	}
	slices.SortFunc(remove, order)
	slices.SortFunc(insert, order)
	m := new(dns.Msg)
	m.SetUpdate(zoneName)
	var dels []dns.RR
	for _, k := range remove {
		dels = append(dels, &dns.ANY{Hdr: dns.RR_Header{Name: k.Name, Rrtype: k.Type, Class: dns.ClassANY}})
	}
	m.RemoveRRset(dels)
	for _, k := range insert {
		m.Insert(want[k])
	}
	return m, len(remove)
}

// notDelegated returns the prerequisites "RRset does not exist" of type NS (RFC 2136 §2.4.3)
// at each of names, names of zoneName, and at each name above one strictly below the apex, once
// each. An UPDATE that carries them is refused whole (YXRRSET) by a primary that delegates a
// name it writes, or one above it: what the UPDATE would write there is the delegation's glue,
// or never answered. A human may delegate an owned name at any time, and the pusher learns it
// only by asking; asking before every push would cost a failover a round trip, the
// prerequisites cost none, and about 20 bytes a name one label below the apex (more for each
// label deeper, each ancestor required too), compressed: in the first 16 KB of an
// UPDATE nearly none, as the records after them point at the name they write out (see split).
// BIND and Knot both refuse so (see
// TestOnARealBINDPrimaryAFailoverRightAfterANameIsDelegatedKeepsTheDelegationsGlue).
func notDelegated(zoneName string, names []string) []dns.RR {
	var out []dns.RR
	seen := map[string]bool{}
	for _, name := range names {
		labels := dns.Split(name)
		for _, i := range labels[:len(labels)-dns.CountLabel(zoneName)] {
			at := strings.ToLower(name[i:])
			if seen[at] {
				break // and every name above it
			}
			seen[at] = true
			out = append(out, &dns.ANY{Hdr: dns.RR_Header{Name: name[i:], Rrtype: dns.TypeNS, Class: dns.ClassNONE}})
		}
	}
	return out
}

// written returns the names whose records the update m changes, in the order it first names
// them.
func written(m *dns.Msg) []string {
	var names []string
	seen := map[string]bool{}
	for _, rr := range m.Ns {
		if name := rr.Header().Name; !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// unknown returns what is known of the primary's copy after an update from before to want
// failed, the primary having applied it or not: nothing of any name either holds. Every type
// Detour may own at such a name is marked unknownRRset, so that the next update rewrites each
// name Detour still owns and empties each it no longer does (an app that left the
// configuration meanwhile), which forgetting before altogether would leave on the primary.
func unknown(before, want map[zone.Key][]dns.RR) map[zone.Key][]dns.RR {
	out := map[zone.Key][]dns.RR{}
	for _, m := range []map[zone.Key][]dns.RR{before, want} {
		for k := range m {
			for _, t := range ownedTypes {
				out[zone.Key{Name: k.Name, Type: t}] = unknownRRset
			}
		}
	}
	return out
}

// leftOver returns what the primary may hold when its marker names want's records, which
// another server may have pushed: want, and every RRset of pushed (this pusher's last push) at a
// name want does not hold, so that Update empties it. The other server may never have owned such
// a name (an app a reload removed, before that server started with the new configuration), and
// left it on the primary as it leaves the primary's own names.
func leftOver(pushed, want map[zone.Key][]dns.RR) map[zone.Key][]dns.RR {
	names := map[string]bool{}
	for k := range want {
		names[k.Name] = true
	}
	out := maps.Clone(want)
	for k, rrs := range pushed {
		if !names[k.Name] {
			out[k] = rrs
		}
	}
	return out
}

// unknownRRset stands for an RRset whose records on the primary are not known: a record of
// type ANY, which no RRset Detour owns holds, so that Update replaces it.
var unknownRRset = []dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeANY, Class: dns.ClassANY}}}

// maxUpdate is the most an UPDATE may hold, compressed, before its TSIG: a TCP message carries
// at most 65,535 bytes, and the TSIG record that signing adds after the message is measured
// takes at most 358 (a key name of 255 bytes, uncompressed, and HMAC-SHA512's 64-byte MAC).
const maxUpdate = dns.MaxMsgSize - 1024

// split cuts the update m into parts of at most max bytes, each holding every record of the
// names it changes, so that each name is still replaced in one step. Where m requires that its
// names are not delegated (see notDelegated), each part requires it of its own names, where m
// does (a name just asked goes without: see push). build
// makes the ith part of its prerequisites and records, adding what a part carries beside them
// (see conditional) and, where last says the part is the last, what that one carries.
//
// Each part is measured as it is sent, compressed (RFC 1035 §4.1.4): a name written again costs
// two bytes, a pointer to where it was first written, where that lies in the first 16 KB of the
// message (a pointer has 14 bits), and else its labels below the zone's name. What a name adds
// is known only once the part is laid out, so a part takes names while the sum of their
// uncompressed sizes, each at least what its name adds, fits beside the part's size as last
// measured; then it is measured again, and takes more while the measure leaves room. A measure
// over max (the part would be the last, whose marker the sum leaves out; or prerequisites moved
// a name that later records point at past the first 16 KB) keeps the part as measured before.
func split(m *dns.Msg, max int, build func(i int, prereqs, records []dns.RR, last bool) *dns.Msg) []*dns.Msg {
	zoneName := m.Question[0].Name
	guarded := len(m.Answer) > 0
	required := map[string]bool{}
	for _, rr := range m.Answer {
		required[strings.ToLower(rr.Header().Name)] = true
	}
	records := map[string][]dns.RR{}
	for _, rr := range m.Ns {
		name := rr.Header().Name
		records[name] = append(records[name], rr)
	}
	names := written(m)
	sizes := make([]int, len(names))
	for i, name := range names {
		for _, rr := range records[name] {
			sizes[i] += dns.Len(rr)
		}
		if guarded {
			// A name's prerequisites are counted whole, those of the names above it too,
			// though a part that holds one of those already carries them once.
			for _, rr := range notDelegated(zoneName, []string{name}) {
				sizes[i] += dns.Len(rr)
			}
		}
	}
	// part builds the ith part of the first n names left.
	part := func(i, n int) *dns.Msg {
		var prereqs, rrs []dns.RR
		if guarded {
			prereqs = slices.DeleteFunc(notDelegated(zoneName, names[:n]), func(rr dns.RR) bool { return !required[strings.ToLower(rr.Header().Name)] })
		}
		for _, name := range names[:n] {
			rrs = append(rrs, records[name]...)
		}
		return build(i, prereqs, rrs, n == len(names))
	}
	var parts []*dns.Msg
	for i := 0; len(names) > 0; i++ {
		// A part holds one name at least, however large.
		n, cut := 1, part(i, 1)
		for size := cut.Len(); ; {
			more, sum := n, size
			for more < len(names) && sum+sizes[more] <= max {
				sum += sizes[more]
				more++
			}
			if more == n {
				break
			}
			larger := part(i, more)
			if size = larger.Len(); size > max {
				break
			}
			n, cut = more, larger
		}
		parts = append(parts, cut)
		names, sizes = names[n:], sizes[n:]
	}
	return parts
}

// sameRRset reports whether two RRsets hold the same records with the same TTLs.
func sameRRset(a, b []dns.RR) bool {
	return len(a) == len(b) && slices.Equal(rrsetKey(a, true), rrsetKey(b, true))
}

// sameData reports whether two RRsets hold the same records, whatever their TTLs.
func sameData(a, b []dns.RR) bool {
	return len(a) == len(b) && slices.Equal(rrsetKey(a, false), rrsetKey(b, false))
}

// rrsetKey returns the records of rrs as text, lower case and sorted, with their TTLs or
// without.
func rrsetKey(rrs []dns.RR, ttl bool) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if !ttl {
			rr = dns.Copy(rr)
			rr.Header().Ttl = 0
		}
		out = append(out, strings.ToLower(rr.String()))
	}
	slices.Sort(out)
	return out
}

package zone

import (
	"maps"
	"slices"

	"github.com/miekg/dns"
)

// Delta is the difference between two versions of a zone: the records the later one no longer
// has and those it added (what one step of an IXFR carries, RFC 1995).
type Delta struct {
	From, To       uint32
	Deleted, Added []dns.RR
}

// Diff returns the delta from old to z, two projections of one configuration: only app names
// change between them. A node z shares with old (Zone.Replace shares every app it did not
// decide again) adds nothing, so a version that changed a few apps costs a few; when z is old
// with answers replaced, the names to compare are those Replace replaced, and the zone is not visited.
func Diff(old, z *Zone) Delta {
	names, ok := z.ReplacedSince(old)
	if !ok {
		names = unshared(old, z)
	}
	return diffNames(old, z, names)
}

// unshared returns the app names whose nodes differ between old and z, visiting both zones.
func unshared(old, z *Zone) []string {
	names := map[string]bool{}
	for _, zz := range []*Zone{old, z} {
		for name, n := range zz.Nodes.All() {
			if n.App != nil && old.Nodes.Get(name) != z.Nodes.Get(name) {
				names[name] = true
			}
		}
	}
	return slices.Collect(maps.Keys(names))
}

// diffNames is Diff over the given names, which must hold every app name whose node differs
// between old and z (others are skipped).
func diffNames(old, z *Zone, names []string) Delta {
	d := Delta{From: old.Serial, To: z.Serial}
	names = slices.Clone(names)
	SortCanonical(names, func(name string) string { return name })
	for i, name := range names {
		if i > 0 && names[i-1] == name {
			continue
		}
		o, n := old.Nodes.Get(name), z.Nodes.Get(name)
		if o != nil && n != nil && o.App == n.App && o.AppTTL == n.AppTTL {
			continue // one answer, shared by both projections
		}
		before, after := appRecords(o), appRecords(n)
		d.Deleted = append(d.Deleted, missing(before, after)...)
		d.Added = append(d.Added, missing(after, before)...)
	}
	return d
}

// appRecords lists the records a node's app gives, in type order.
func appRecords(n *Node) []dns.RR {
	if n == nil || n.App == nil {
		return nil
	}
	recs := n.Records()
	var out []dns.RR
	for _, t := range slices.Sorted(maps.Keys(recs)) {
		if _, static := n.RRsets[t]; !static {
			out = append(out, recs[t]...)
		}
	}
	return out
}

// missing returns the records of a that b lacks.
func missing(a, b []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range a {
		if !slices.ContainsFunc(b, func(o dns.RR) bool { return dns.IsDuplicate(rr, o) && rr.Header().Ttl == o.Header().Ttl }) {
			out = append(out, rr)
		}
	}
	return out
}

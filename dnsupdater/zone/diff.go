package zone

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"slices"
	"strings"

	"github.com/detourdev/detour/events"
	"github.com/miekg/dns"
)

// Key names one RRset.
type Key struct {
	Name string
	Type uint16
}

// AppRRsets returns the RRsets of the zone's app names, as sorted record data in presentation
// form: the only records that change while a configuration is in force.
func (z *Zone) AppRRsets() map[Key][]string {
	out := map[Key][]string{}
	for _, n := range z.Nodes.All() {
		n.AppRRsets(out)
	}
	return out
}

// AppRRsets adds the RRsets of the node's app answer to out, as AppRRsets of the zone does.
func (n *Node) AppRRsets(out map[Key][]string) {
	if n.App == nil {
		return
	}
	for t, rrs := range n.Records() {
		if t == dns.TypeSOA || t == dns.TypeNS {
			continue
		}
		data := make([]string, 0, len(rrs))
		for _, rr := range rrs {
			data = append(data, RData(rr))
		}
		slices.Sort(data)
		out[Key{n.Name, t}] = data
	}
}

// RData is the record data of rr in presentation form, without name, TTL, class and type.
func RData(rr dns.RR) string {
	s := rr.String()
	h := rr.Header().String()
	return strings.TrimPrefix(s, h)
}

// Changes lists the RRsets that differ between before and after, in canonical name order, then
// by type. A nil before is an empty zone.
func Changes(before, after map[Key][]string) []events.RecordChange {
	keys := make([]Key, 0, len(after))
	for k, a := range after {
		if !slices.Equal(before[k], a) {
			keys = append(keys, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return int(a.Type) - int(b.Type) })
	SortCanonical(keys, func(k Key) string { return k.Name }) // stable: by type within a name
	out := make([]events.RecordChange, 0, len(keys))
	for _, k := range keys {
		out = append(out, events.RecordChange{Name: k.Name, Type: dns.TypeToString[k.Type], Before: before[k], After: after[k]})
	}
	return out
}

// Content returns every record of the zone in transfer order: the SOA, then every RRset by
// canonical name and type. It is what an AXFR carries, without the closing SOA.
func (z *Zone) Content() []dns.RR {
	rrs := []dns.RR{z.SOA}
	for _, n := range z.Names() {
		recs := z.Nodes.Get(n).Records()
		types := make([]uint16, 0, len(recs))
		for ty := range recs {
			if ty != dns.TypeSOA {
				types = append(types, ty)
			}
		}
		slices.Sort(types)
		for _, ty := range types {
			rrs = append(rrs, recs[ty]...)
		}
	}
	return rrs
}

// Digest is a hash of everything the zone serves but its serial: two projections with the same
// digest answer alike, so they may share a serial.
func (z *Zone) Digest() string {
	h := sha256.New()
	for i, rr := range z.Content() {
		if i == 0 {
			soa := *z.SOA
			soa.Serial = 0
			rr = &soa
		}
		io.WriteString(h, rr.String())
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

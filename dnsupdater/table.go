package dnsupdater

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// table is one immutable generation of the served data: the zones, and every answer the
// prepared path can give, packed, keyed by the lower-case wire form of the name.
type table struct {
	zones   []*zone.Zone
	entries map[string]*entry
	// history holds, per zone, the deltas between its recent versions, oldest first: what
	// IXFR answers from.
	history map[string][]zone.Delta
	// identity is what NSID and CH TXT id.server report (dns.identity); empty reports nothing.
	identity []byte
}

// maxDeltas bounds the versions of a zone IXFR can start from; a secondary further behind
// gets the whole zone.
const maxDeltas = 256

// entry holds the prepared replies of one name. A template is a packed reply with a lower-case
// question and no OPT record; finish turns it into the reply to one query.
type entry struct {
	types []prepared
	// a and aaaa are the address answers of an app's name.
	a, aaaa *choice
	// nodata answers every other ordinary type; nil where the name cannot give NODATA.
	nodata []byte
}

type prepared struct {
	qtype uint16
	tmpl  []byte
}

// choice is an app's answer for one family, one template per variant.
type choice struct {
	ans   *zone.Answer
	tmpls [][]byte
	// empty answers when the answer has no variant.
	empty []byte
}

// buildTable prepares every answer of the zones. Entries of prev (the table of the same
// configuration at an earlier state) are reused where the state cannot change them: names
// without an app or a CNAME below the apex, and app names (without a CNAME) whose node is the
// very one prev was built from, so that a new zone version packs only the answers that
// changed. Their only serial-bearing replies, NODATA, get the new serial patched in.
func buildTable(zones []*zone.Zone, prev *table) *table {
	t := &table{zones: zones, entries: map[string]*entry{}, history: map[string][]zone.Delta{}}
	if prev != nil {
		t.identity = prev.identity
	}
	for _, z := range zones {
		t.history[z.Name] = prev.deltas(z)
		var pz *zone.Zone
		if prev != nil {
			pz = prev.zoneFor(z.Name)
		}
		for name, n := range z.Nodes {
			if delegation(z, name) != nil {
				continue // referrals are answered by the reference path
			}
			wire, ok := wireName(name)
			if !ok {
				continue
			}
			if old := prev.reusable(wire, z, pz, n); old != nil {
				t.entries[wire] = &entry{types: old.types, nodata: withSerial(old.nodata, z.Serial),
					a: old.a.withSerial(z.Serial), aaaa: old.aaaa.withSerial(z.Serial)}
				continue
			}
			t.entries[wire] = t.prepare(n)
		}
	}
	return t
}

// deltas returns the history of z's zone in t, extended by the step from t's version to z.
func (t *table) deltas(z *zone.Zone) []zone.Delta {
	if t == nil {
		return nil
	}
	old := t.zoneFor(z.Name)
	h := t.history[z.Name]
	if old == nil || old.Name != z.Name || old.Serial == z.Serial {
		return h
	}
	if old.Config != z.Config {
		// A new configuration may change static records, which a delta does not carry:
		// secondaries behind it get the whole zone.
		return nil
	}
	h = append(slices.Clone(h[max(0, len(h)-maxDeltas+1):]), zone.Diff(old, z))
	return h
}

// reusable returns prev's entry for a name whose replies do not follow the state, or whose
// app answer is the one prev was built from (pz is prev's version of z), or nil.
func (t *table) reusable(wire string, z, pz *zone.Zone, n *zone.Node) *entry {
	if t == nil || n.Name == z.Name || len(n.RRsets[dns.TypeCNAME]) > 0 {
		return nil
	}
	if n.App != nil && (n.App.CNAME != "" || pz == nil || pz.Nodes[n.Name] != n) {
		return nil
	}
	return t.entries[wire]
}

// withSerial returns c with its replies without records (NODATA, which carry the SOA) at
// serial.
func (c *choice) withSerial(serial uint32) *choice {
	if c == nil {
		return c
	}
	out := &choice{ans: c.ans, tmpls: c.tmpls, empty: c.empty}
	if negative(c.empty) {
		out.empty = withSerial(c.empty, serial)
	}
	cloned := false
	for i, tm := range c.tmpls {
		if negative(tm) {
			if !cloned {
				out.tmpls, cloned = slices.Clone(c.tmpls), true
			}
			out.tmpls[i] = withSerial(tm, serial)
		}
	}
	return out
}

// negative reports whether a prepared reply has no answer and only the SOA in its authority
// section, as NODATA replies do.
func negative(tmpl []byte) bool {
	return len(tmpl) >= headerLen && binary.BigEndian.Uint16(tmpl[6:]) == 0 && binary.BigEndian.Uint16(tmpl[8:]) == 1
}

// withSerial returns a copy of a NODATA template with the serial of its SOA, the last record
// of the message, replaced.
func withSerial(tmpl []byte, serial uint32) []byte {
	if len(tmpl) < headerLen+20 {
		return tmpl
	}
	out := slices.Clone(tmpl)
	binary.BigEndian.PutUint32(out[len(out)-20:], serial)
	return out
}

// prepare packs every answer a name gives to the ordinary query types.
func (t *table) prepare(n *zone.Node) *entry {
	e := &entry{}
	pack := func(qtype uint16, variant int) []byte {
		r := t.resolve(0, dns.Question{Name: n.Name, Qtype: qtype, Qclass: dns.ClassINET}, func(*zone.Answer) int { return variant })
		b, err := r.msg.Pack()
		if err != nil {
			return nil
		}
		return b
	}
	choose := func(qtype uint16, a *zone.Answer) *choice {
		c := &choice{ans: a}
		if len(a.Variants) == 0 {
			c.empty = pack(qtype, -1)
		}
		for i := range a.Variants {
			c.tmpls = append(c.tmpls, pack(qtype, i))
		}
		return c
	}
	recs := n.Records()
	switch {
	case n.App != nil && n.App.CNAME == "":
		e.a, e.aaaa = choose(dns.TypeA, &n.App.V4), choose(dns.TypeAAAA, &n.App.V6)
	case n.App != nil:
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME} {
			e.types = append(e.types, prepared{qt, pack(qt, 0)})
		}
		return e
	case len(recs[dns.TypeCNAME]) > 0:
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME} {
			e.types = append(e.types, prepared{qt, pack(qt, 0)})
		}
		return e
	}
	for qt := range n.RRsets {
		e.types = append(e.types, prepared{qt, pack(qt, 0)})
	}
	absent := uint16(dns.TypeNULL)
	for len(recs[absent]) > 0 {
		absent++
	}
	e.nodata = pack(absent, 0)
	return e
}

// answer returns the template for q from the prepared replies, the ECS scope to report, and
// whether there was one.
func (e *entry) answer(q *query, w *worker, remote netip.Addr) ([]byte, uint8, bool) {
	var c *choice
	switch q.qtype {
	case dns.TypeA:
		c = e.a
	case dns.TypeAAAA:
		c = e.aaaa
	}
	if c != nil {
		i := c.ans.Choose(w.random(), w.next(), clientOf(remote, q.ecsAddr, q.ecsBits))
		var scope uint8
		if q.ecs != nil {
			scope = c.ans.Scope(q.ecsAddr, q.ecsBits)
		}
		if i < 0 {
			return c.empty, scope, c.empty != nil
		}
		return c.tmpls[i], scope, c.tmpls[i] != nil
	}
	for i := range e.types {
		if e.types[i].qtype == q.qtype {
			return e.types[i].tmpl, 0, e.types[i].tmpl != nil
		}
	}
	if e.nodata != nil && ordinaryType(q.qtype) {
		return e.nodata, 0, true
	}
	return nil, 0, false
}

// ordinaryType reports whether t is a data type (not a meta or question-only type) that a name
// without it answers with NODATA.
func ordinaryType(t uint16) bool {
	return t != 0 && t != typeOPT && (t < 128 || t > 255)
}

// wireName packs a canonical name.
func wireName(name string) (string, bool) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

package dnsupdater

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// table is one immutable generation of the served data: the zones, and every answer the
// prepared path can give, packed, keyed by the lower-case wire form of the name.
type table struct {
	zones   []*zone.Zone
	entries *entries
	// serials are the zones' serials, by zone name: the prepared replies that carry the SOA
	// (NODATA) get it when they are sent, so that an entry serves every version it is in.
	serials map[string]uint32
	// history holds, per zone, the deltas between its recent versions, oldest first: what
	// IXFR answers from.
	history map[string][]zone.Delta
	// identity is what NSID and CH TXT id.server report (dns.identity); empty reports nothing.
	identity []byte
	// volatile holds, per zone, the names whose replies are prepared again in every version
	// of the zone (those that read more than their own node, see reach): a version built from
	// the one before visits them and the nodes its projection replaced, not the whole zone.
	volatile map[string][]string
	// foreign holds, per zone, those of its volatile names whose replies read another zone:
	// they are prepared again in every version of the zones, whichever zone it changed.
	foreign map[string][]string
	// extended says that a later table was built from this one: it appended its delta to
	// this table's history in place, past the end this table reads (see deltas), so that a
	// second table built from this one must copy the history instead (or, keeping it
	// unchanged, hold it with no room to append). Only the refresher, which builds the
	// tables, reads and writes it.
	extended bool
	// referrals holds the additional sections of the referrals answered from this table, by
	// cut (*zone.Node to *referralExtra), made as they are first asked for.
	referrals *sync.Map
}

// maxDeltas bounds the versions of a zone IXFR can start from; a secondary further behind
// gets the whole zone.
const maxDeltas = 256

// entry holds the prepared replies of one name. A template is a packed reply with a lower-case
// question and no OPT record; finish turns it into the reply to one query.
type entry struct {
	// zone is the name of the zone the name is in, whose serial a NODATA reply carries.
	zone  string
	types []prepared
	// a and aaaa are the address answers of an app's name, or of a CNAME whose chain ends at
	// one: a template per variant of the app's answer.
	a, aaaa *choice
	// reach is what the replies read besides the name's node: what a version prepares them
	// again for.
	reach reach
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

// buildTable prepares every answer of the zones. Entries of prev (the table of an earlier
// state) are reused where the state cannot change them: names whose replies read only their own
// node (no CNAME chain, no app's addresses beside an MX or SRV record, not the apex), without
// an app and of the same configuration, or with an app whose node is the very one prev was
// built from. A new version of the same zones starts from prev's entries and prepares only the
// nodes its projection replaced and the volatile ones (those of the other zones too that read a
// zone it changed), so that it costs in proportion to the answers that changed, not to the size
// of the zone: when the projection says which nodes it replaced (zone.ReplacedSince), the zone
// is not even visited.
func buildTable(zones []*zone.Zone, prev *table) *table {
	t := &table{zones: zones, history: map[string][]zone.Delta{}, serials: make(map[string]uint32, len(zones)),
		volatile: make(map[string][]string, len(zones)), foreign: make(map[string][]string, len(zones)),
		referrals: &sync.Map{}}
	inPlace := false
	if prev != nil {
		t.identity = prev.identity
		inPlace, prev.extended = !prev.extended, true
	}
	for _, z := range zones {
		t.serials[z.Name] = z.Serial
		t.history[z.Name] = prev.deltas(z, inPlace)
	}
	if prev.sameZones(zones) {
		t.entries = prev.entries.next()
		changed := !slices.Equal(zones, prev.zones)
		for i, z := range zones {
			pz := prev.zones[i]
			switch replaced, ok := z.ReplacedSince(pz); {
			case pz == z:
				// The zone is as it was, and so is which of its names read what (a chain
				// leaves it, or an MX target lies outside it, by its own records), but not
				// what they read of the zones that changed.
				t.volatile[z.Name], t.foreign[z.Name] = prev.volatile[z.Name], prev.foreign[z.Name]
				if changed {
					for _, name := range prev.foreign[z.Name] {
						t.put(z, name, z.Nodes.Get(name), nil, nil)
					}
				}
			case ok:
				t.putReplaced(z, replaced, prev.volatile[z.Name])
			default:
				t.putChanged(z, pz, prev.volatile[z.Name])
			}
		}
		return t
	}
	size := 0
	for _, z := range zones {
		size += z.Nodes.Len()
	}
	t.entries = newEntries(size)
	for _, z := range zones {
		var pz *zone.Zone
		if prev != nil {
			pz = prev.zoneFor(z.Name)
		}
		for name, n := range z.Nodes.All() {
			t.note(z, name, t.put(z, name, n, prev, pz))
		}
	}
	return t
}

// putChanged prepares the nodes of z that differ from pz's, a version of the same zone whose
// entries t holds, and the volatile ones (volatile names pz's), visiting both zones.
func (t *table) putChanged(z, pz *zone.Zone, volatile []string) {
	again := make(map[string]bool, len(volatile))
	for _, name := range volatile {
		again[name] = true
	}
	for name, n := range z.Nodes.All() {
		if pz.Nodes.Get(name) != n || again[name] {
			t.note(z, name, t.put(z, name, n, nil, nil))
		}
	}
	for name := range pz.Nodes.All() {
		if z.Nodes.Get(name) == nil {
			if wire, ok := wireName(name); ok {
				t.entries.del(wire)
			}
		}
	}
}

// putReplaced is putChanged for z made by zone.Replace from the version whose entries t holds:
// replaced names the nodes the projection replaced, and volatile the volatile names of that
// version. Every other node is the earlier version's own, so only these are visited.
func (t *table) putReplaced(z *zone.Zone, replaced, volatile []string) {
	again := make(map[string]bool, len(replaced))
	for _, name := range replaced {
		if again[name] {
			continue
		}
		again[name] = true
		t.note(z, name, t.put(z, name, z.Nodes.Get(name), nil, nil))
	}
	for _, name := range volatile {
		if !again[name] {
			t.note(z, name, t.put(z, name, z.Nodes.Get(name), nil, nil))
		}
	}
}

// note adds name, a name of z whose entry is e (nil: none), to z's volatile names when its
// replies read more than its node, and to its foreign ones when they read another zone.
func (t *table) note(z *zone.Zone, name string, e *entry) {
	if e == nil || e.reach == ownNode {
		return
	}
	t.volatile[z.Name] = append(t.volatile[z.Name], name)
	if e.reach == otherZones {
		t.foreign[z.Name] = append(t.foreign[z.Name], name)
	}
}

// sameZones reports whether zones are the zones of t at a later state: the same zones of the
// same configuration, in the same order.
func (t *table) sameZones(zones []*zone.Zone) bool {
	if t == nil || len(t.zones) != len(zones) {
		return false
	}
	for i, z := range zones {
		if pz := t.zones[i]; pz.Name != z.Name || pz.Config != z.Config {
			return false
		}
	}
	return true
}

// put prepares the entry of name, a node of z, unless prev (whose version of z is pz) holds
// one that can be reused, and returns it, or nil when the name has none.
func (t *table) put(z *zone.Zone, name string, n *zone.Node, prev *table, pz *zone.Zone) *entry {
	wire, ok := wireName(name)
	if !ok {
		return nil
	}
	if delegation(z, name) != nil {
		t.entries.del(wire) // referrals are answered by the reference path
		return nil
	}
	if old := prev.reusable(wire, z, pz, n); old != nil {
		t.entries.set(wire, old)
		return old
	}
	e := t.prepare(n)
	e.zone = z.Name
	if name == z.Name && t.parentZone(name) != nil {
		e.answerDSFromParent()
	}
	t.entries.set(wire, e)
	return e
}

// answerDSFromParent leaves the DS question of e, the entry of a zone's apex whose parent zone
// Detour serves, to the reference path, which answers it from the parent zone: a prepared reply
// would carry the serial of e's zone.
func (e *entry) answerDSFromParent() {
	for i := range e.types {
		if e.types[i].qtype == dns.TypeDS {
			e.types[i].tmpl = nil
			return
		}
	}
	e.types = append(e.types, prepared{qtype: dns.TypeDS})
}

// deltas returns the history of z's zone in t, extended by the step from t's version to z.
// With inPlace (t is the table of the version before z's, and no other table was built from
// it) the step is appended in the room past the end of t's history, which t never reads, rather
// than to a copy of the whole history: a version of a region's storm copied its up to 256 steps.
func (t *table) deltas(z *zone.Zone, inPlace bool) []zone.Delta {
	if t == nil {
		return nil
	}
	old := t.zoneFor(z.Name)
	h := t.history[z.Name]
	if old == nil || old.Name != z.Name || old.Serial == z.Serial {
		if !inPlace {
			// The room past h's end may hold another table's step: whatever extends this
			// history from the new table copies it.
			return h[:len(h):len(h)]
		}
		return h
	}
	if old.Config != z.Config {
		// A new configuration may change static records, which a delta does not carry:
		// secondaries behind it get the whole zone.
		return nil
	}
	h = h[max(0, len(h)-maxDeltas+1):]
	if !inPlace || len(h) == cap(h) {
		// Room for maxDeltas more steps: a copy once per as many versions.
		h = append(make([]zone.Delta, 0, len(h)+maxDeltas), h...)
	}
	return append(h, zone.Diff(old, z))
}

// reusable returns prev's entry for a node of z whose replies do not follow the state: one
// that read only its node (reach), of a name without an app in the same configuration, or of
// an app name whose node is the one prev was built from (pz is prev's version of z); or nil.
func (t *table) reusable(wire string, z, pz *zone.Zone, n *zone.Node) *entry {
	if t == nil || pz == nil {
		return nil
	}
	if n.App == nil && pz.Config != z.Config {
		return nil
	}
	if n.App != nil && pz.Nodes.Get(n.Name) != n {
		return nil
	}
	if old := t.entries.get(wire); old != nil && old.reach == ownNode {
		return old
	}
	return nil
}

// negative reports whether a prepared reply has no answer and only the SOA in its authority
// section, as NODATA replies do.
func negative(tmpl []byte) bool {
	return len(tmpl) >= headerLen && binary.BigEndian.Uint16(tmpl[6:]) == 0 && binary.BigEndian.Uint16(tmpl[8:]) == 1
}

// stampSerial writes the serial of e's zone into reply, built by finish from tmpl, when tmpl
// is a NODATA reply: its SOA is the template's last record, and the serial the first of the
// last 20 bytes. A truncated reply carries no SOA.
func (t *table) stampSerial(reply, tmpl []byte, e *entry) {
	if !negative(tmpl) || len(tmpl) < headerLen+20 || len(reply) < len(tmpl) || reply[2]&0x02 != 0 {
		return
	}
	binary.BigEndian.PutUint32(reply[len(tmpl)-20:], t.serials[e.zone])
}

// prepare packs every answer a name gives to the ordinary query types, and notes what they
// read besides the node.
func (t *table) prepare(n *zone.Node) *entry {
	e := &entry{}
	pack := func(qtype uint16, pick picker) []byte {
		r := t.resolve(0, dns.Question{Name: n.Name, Qtype: qtype, Qclass: dns.ClassINET}, pick)
		e.reach = max(e.reach, r.reach)
		b, err := r.msg.Pack()
		if err != nil {
			return nil
		}
		return b
	}
	// add packs the replies to qtype: one, or, when the reply is an app's answer (the name's
	// own, or at the end of its CNAME chain), one per variant of it.
	add := func(qtype uint16) {
		var ans *zone.Answer
		first := pack(qtype, func(a *zone.Answer) int {
			ans = a
			if len(a.Variants) == 0 {
				return -1
			}
			return 0
		})
		if ans == nil {
			e.types = append(e.types, prepared{qtype, first})
			return
		}
		c := &choice{ans: ans}
		if len(ans.Variants) == 0 {
			c.empty = first
		}
		for i := range ans.Variants {
			if i == 0 {
				c.tmpls = append(c.tmpls, first)
				continue
			}
			c.tmpls = append(c.tmpls, pack(qtype, func(*zone.Answer) int { return i }))
		}
		if qtype == dns.TypeA { // resolve picks a variant for A and AAAA only
			e.a = c
		} else {
			e.aaaa = c
		}
	}
	recs := n.Records()
	switch {
	case n.App != nil && n.App.CNAME == "":
		add(dns.TypeA)
		add(dns.TypeAAAA)
	case n.App != nil || len(recs[dns.TypeCNAME]) > 0:
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME} {
			add(qt)
		}
		return e
	}
	for qt := range n.RRsets {
		add(qt)
	}
	absent := uint16(dns.TypeNULL)
	for len(recs[absent]) > 0 {
		absent++
	}
	e.nodata = pack(absent, func(*zone.Answer) int { return 0 })
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
	var buf [256]byte
	n, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

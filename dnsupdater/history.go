package dnsupdater

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/miekg/dns"
)

// maxHistoryReads bounds the messages of one zone's subject read at start to rebuild its IXFR
// history, whatever the stream holds: start-up stays fast however long the zone has lived.
const maxHistoryReads = 4 * maxDeltas

// stepOf is d as the step a ZoneChanged event carries.
func stepOf(d zone.Delta) *events.ZoneStep {
	st := &events.ZoneStep{From: d.From}
	for _, rr := range d.Deleted {
		st.Deleted = append(st.Deleted, rr.String())
	}
	for _, rr := range d.Added {
		st.Added = append(st.Added, rr.String())
	}
	return st
}

// deltaOf reads the step of a ZoneChanged event of zone name back into a delta. A step whose
// records do not parse, lie outside the zone or are of a type no app answers with is refused:
// a forged event must not put records into a transfer.
func deltaOf(name string, zc events.ZoneChanged) (zone.Delta, error) {
	d := zone.Delta{From: zc.Step.From, To: zc.Serial}
	parse := func(field string, texts []string) ([]dns.RR, error) {
		out := make([]dns.RR, 0, len(texts))
		for i, s := range texts {
			rr, err := dns.NewRR(s)
			if err != nil || rr == nil {
				return nil, fmt.Errorf("step.%s[%d]: %q is no record: %v", field, i, s, err)
			}
			h := rr.Header()
			h.Name = strings.ToLower(h.Name)
			if h.Class != dns.ClassINET || !dns.IsSubDomain(name, h.Name) {
				return nil, fmt.Errorf("step.%s[%d]: %q is not an IN record of %s", field, i, s, name)
			}
			switch h.Rrtype {
			case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME:
			default:
				return nil, fmt.Errorf("step.%s[%d]: %q: type %s is no app answer", field, i, s, dns.TypeToString[h.Rrtype])
			}
			out = append(out, rr)
		}
		return out, nil
	}
	var err error
	if d.Deleted, err = parse("deleted", zc.Step.Deleted); err != nil {
		return d, err
	}
	if d.Added, err = parse("added", zc.Step.Added); err != nil {
		return d, err
	}
	return d, nil
}

// historyFold rebuilds a zone's IXFR history and the serial served before this run from the
// messages of the server's own subject of the zone (events.ZoneSubject), read newest first (see
// dnsReads.history): the unbroken run of steps that ends at serial, at most maxDeltas of them.
// Only the versions the server self recorded count: servers connected without a user of their
// own share a subject when they share a name, and their serials may repeat this one's with other
// content (a reservation of its own, a configuration it kept, events batched otherwise), so a
// step of theirs could give a secondary records this server never served. It also finds the
// newest version recorded under the server's name by any run of it before this one, looked
// for past the history's end, whose serial a secondary may hold: with the serials served known
// (not fresh), only those of its own id.
type historyFold struct {
	name   string
	self   writer
	serial uint32
	newest []zone.Delta // newest first, each the step before the one ahead of it
	served *recorded
	want   uint32
	// chaining says that the history still grows: with fresh, no version recorded leads to
	// the serial. Once it ends, the subject is read on for served alone: this run's own
	// versions recorded before the read (a version without a step, more than maxDeltas) must
	// not hide the serial an earlier run served before them.
	chaining bool
}

// newHistoryFold starts the fold of zone name's messages for self, whose serial is serial.
func newHistoryFold(name string, self writer, serial uint32) *historyFold {
	return &historyFold{name: name, self: self, serial: serial, want: serial, chaining: !self.fresh}
}

// add folds the next older message, data, and reports whether the fold is done: no older
// message could change its result.
func (f *historyFold) add(data []byte) bool {
	b := storedStep(f.name, f.self, data)
	if f.served == nil && b.served != nil && (f.self.fresh || b.served.server == f.self.id) {
		// With the serials served known, only its own id's count (see passServed): another
		// host's of the same name must not hide them.
		f.served = b.served
	}
	if f.chaining {
		switch {
		case !b.changed:
			// another event on the subject (a push report, another server's version)
		case b.ok && b.d.To == f.want:
			f.newest = append(f.newest, b.d)
			f.want = b.d.From
			f.chaining = len(f.newest) < maxDeltas
		case len(f.newest) == 0 && b.ok && serialAfter(b.d.To, f.serial):
			// a version after serial's: one the snapshot restored lacks (a crash)
		default:
			f.chaining = false // a version the chain cannot step over
		}
	}
	return !f.chaining && f.served != nil
}

// result is the history folded, oldest first, and the version served before this run (nil:
// none found).
func (f *historyFold) result() ([]zone.Delta, *recorded) {
	return chain(slices.Clone(f.newest)), f.served
}

// stored is what one message of a zone's subject tells of its history: whether it is a
// ZoneChanged event of the zone recorded by the server reading (a version), and whether it
// carries a valid step to it; and served, the version when a run of the server of any id
// recorded it.
type stored struct {
	d           zone.Delta
	changed, ok bool
	served      *recorded
}

// recorded is a version of a zone the DNS stream records under the server's name: its serial
// and the id of the run that served it.
type recorded struct {
	serial uint32
	server string
}

// writer identifies the server whose versions a history follows: its name, the source of its
// events, and its id (see serverIDFile).
type writer struct {
	name, id string
	// token names the server's own subject of each zone (events.ZoneSubject).
	token string
	// fresh says that no version recorded leads to the serial: the data dir told no serial
	// served (there is none, or it is new), so the zones took new ones.
	fresh bool
	// key derives the ids of this run's own versions (Server.idKey, new at each start): a
	// version of id it did not derive is an earlier run's, whatever its date (a clock set back
	// since dates an earlier run's versions after this start).
	key events.IDKey
	// digests is where the versions of its id read note their digests, which tell where an
	// IXFR may start (nil: nowhere).
	digests *versionDigests
}

// storedStep reads one stored message of zone name's subject for the server self: another
// server's version is no version of self's. A version of the zone notes its digest in
// self.digests, as self's or as that of another server of its name.
func storedStep(name string, self writer, data []byte) stored {
	env, err := events.Decode(data)
	if err != nil || env.Type != events.TypeZoneChanged || env.Source != self.name {
		return stored{}
	}
	var zc events.ZoneChanged
	if err := env.Payload(&zc); err != nil {
		return stored{changed: true} // unreadable: a break, whoever wrote it
	}
	served := &recorded{serial: zc.Serial, server: zc.Server}
	if zc.Zone != name || zc.Server == self.id && self.key.Derives(env, changeKey(env.Source, zc.Server, zc.Zone, zc.Serial, zc.Part)) {
		// Another zone's, or this run's own, recorded before the subject was read (NATS slow
		// at start, a zone read late among many): no serial served before the start, and it
		// would hide the one an earlier run served.
		served = nil
	}
	switch {
	case zc.Zone != name || self.digests == nil:
	case zc.Server != self.id:
		// A server sharing the name, whose versions a secondary may hold (see versionDigests).
		self.digests.other(name, self.token, zc.Serial, zc.Digest)
	case zc.Digest != "":
		self.digests.own(name, zc.Serial, zc.Digest)
	}
	if zc.Server != self.id {
		return stored{served: served}
	}
	if zc.Zone != name || zc.Step == nil || zc.Step.From == zc.Serial {
		return stored{changed: true, served: served}
	}
	d, err := deltaOf(name, zc)
	return stored{d: d, changed: true, ok: err == nil, served: served}
}

// chain turns steps read newest first into a history, oldest first.
func chain(newest []zone.Delta) []zone.Delta {
	slices.Reverse(newest)
	return newest
}

// histories is what the DNS stream records of zones a server serves (see readBack): their IXFR
// histories, and the newest version of each that an earlier run of the server recorded.
type histories struct {
	steps  map[string][]zone.Delta
	served map[string]recorded
}

// self is the writer whose versions the server's histories follow: its own.
func (s *Server) self() writer {
	return writer{name: s.o.Name, id: s.id, token: s.writer, fresh: !s.knowsServed, key: s.idKey, digests: s.digests}
}

// installHistories puts the histories read from the stream in front of those of the current
// table, where they join: each must end at the serial the zone's history starts from (its
// serial when it has none). Only the refresher calls it.
func (s *Server) installHistories(read map[string][]zone.Delta) {
	t := s.table.Load()
	history := maps.Clone(t.history)
	changed := false
	for _, z := range t.zones {
		h, cur := read[z.Name], history[z.Name]
		if len(h) == 0 {
			continue
		}
		joins := z.Serial
		if len(cur) > 0 {
			joins = cur[0].From
		}
		if h[len(h)-1].To != joins {
			continue
		}
		h = append(slices.Clone(h), cur...)
		history[z.Name], changed = h[max(0, len(h)-maxDeltas):], true
	}
	if changed {
		nt := *t
		nt.history = history
		s.table.Store(&nt)
	}
}

// passServed reports whether a zone's serial must move past the versions recorded under the
// server's name, the newest of each zone in served: the next projection gives every zone served
// at or before its newest (RFC 1982) a serial after it. A secondary holding that serial ignores
// every earlier one, and may hold other content at an equal one: a run that served faster than
// one version a second left serials ahead of the clock, which a start without its data dir (none,
// a lost one, an older copy) reaches again only later. A version of this server's id counts when
// it is later than the serial served (an older data dir); one of another id only when the data
// dir told nothing of the serials served before (it is then an earlier run's, else another
// host's of the same name). The serial compared is the projector's, which a zone a reload removed
// since it was read keeps, and takes up again if it comes back. Only the refresher calls it.
func (s *Server) passServed(served map[string]recorded) bool {
	raise := map[string]uint32{}
	s.projMu.Lock()
	current := make(map[string]uint32, len(served))
	for name, r := range served {
		serial, ok := s.proj.serials[name]
		earlier := ok && (r.server == s.id || !s.knowsServed)
		if earlier && (serialAfter(r.serial, serial) || r.serial == serial && r.server != s.id) {
			raise[name], current[name] = r.serial, serial
			// A run of another id may have served this run's serials with other records; the
			// history of this server's own id holds its own.
			s.proj.pass(map[string]uint32{name: r.serial}, r.server != s.id)
		}
	}
	s.projMu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(raise)) {
		s.log.Info().Str("zone", name).Uint32("serial", current[name]).Uint32("recorded_serial", raise[name]).Msg("the stream records a serial served at or after this one; the zone takes a later one")
	}
	return len(raise) > 0
}

package dnsupdater

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Serials across servers. Each DNS server takes its serials by itself (NextSerial, the serials
// file), and a secondary that lists two of them as masters holds the highest serial either
// served. When the one that served it stops, the other's versions must still reach the
// secondary, which ignores every serial not after the one it holds (RFC 1982).
//
// Each server therefore follows the versions the others record on the DNS stream (one consumer
// on detour.dns.>, whatever the number of zones), keeps per zone the highest serial another
// server recorded and each writer's highest version, and:
//   - gives each new version of its own a serial after both its last one and that highest one
//     (a Lamport clock): a version the server left makes after the other stopped passes
//     whatever serial the other served;
//   - re-stamps a zone, serving its content at a serial past the other's and NOTIFYing, when
//     any other recorded a serial at or after its own for other records (the digest,
//     events.ZoneChanged.Digest, differs) and its own records are the newer: a secondary that
//     took the other's serial then takes its content even if the other stops before its next
//     version. It waits restampGrace first: a server behind usually records its next version,
//     which asks for nothing, well within it. The same records at any serial ask for nothing.
//
// "The newer" is told by how far each server had folded the one STATE stream when it recorded
// its version (events.ZoneChanged.StateSeq): a zone's records are a function of the state folded
// (the configurations alike), so a server folded further holds the later records. A server
// behind does not re-stamp: its next version, once it has folded as far, takes a serial after
// the other's anyway if the zone changes meanwhile, and looks again once it has read as far if
// it does not (other configurations). A server re-stamps as the newer only when its records were made after the
// other's position (ownVersion.since): when they were already its records there, the records
// differ at one position, which only other configurations explain (a reload reaching one
// server before the other, or one server refusing a version for long), and the server of the
// higher name (peerName: its writer, then its id) re-stamps while the other never does. A re-stamp records the position its server
// reached, past the other's, with records made no later: were the positions alone compared,
// under other configurations and a moving STATE each server would find itself further than the
// other's last re-stamp and re-stamp in turn, a version and a NOTIFY a second per zone for as
// long as the configurations differ. So of any two versions at most one server re-stamps, and
// a re-stamp never makes the other re-stamp: there is no ping-pong, whatever the positions. A sum of sequences (a CONFIG and a STATE position added)
// would not do: a server behind on CONFIG and ahead on STATE reaches the sum of one ahead on
// CONFIG and behind on STATE with other records. Re-stamping every zone on every STATE event
// would, at one NOTIFY and one IXFR per zone per event.
//
// A peer's record is believed because only DNS servers may publish on detour.dns.>
// (deployments/nats/accounts.conf), each on its own subjects, which name it; the server id a
// record claims counts only beside that writer (peerName), and one claiming this server's
// own id is logged (see peerRecord). Still, a forged or broken one must not carry
// the serials off: a serial more than maxPeerLead past the clock (or past the serial of a
// secondary the zone passed, see ahead.go, or the one it served when the server started) is
// ignored
// (and logged once per peerRefusalWindow), a zone is re-stamped at most once per
// restampEvery, and of the zones this server does not serve the clock keeps
// maxUnservedPeerZones. Without NATS nothing changes: the server answers and takes its serials as
// before, on its own, and picks up the others' records when NATS answers.
//
// The serials file's invariant (serialReserver) holds as it did: a serial past another's, of a
// new version or a re-stamp, is served by the refresher like any other, and cover writes the
// file first when it is beyond the zone's mark.

// maxPeerLead is how far past the clock another server's serial may be and still count: serials
// follow the clock, ahead of it only by versions faster than one a second and a restart's
// reservation (reserveAhead), so a day is far more than any server runs ahead, and a forged
// record cannot move a serial further than that.
const maxPeerLead = 24 * 60 * 60

// restampEvery is the shortest time between two re-stamps of one zone.
const restampEvery = time.Second

// restampGrace is how long a zone waits, once another server's record asks for a re-stamp,
// before it takes one: two servers that batched a burst of STATE events otherwise make versions
// of other records at one serial, and the one behind records its version of the rest of the
// burst within milliseconds, which asks for nothing. A server that stops in between has a
// secondary that took its serial follow the other one this much later.
const restampGrace = time.Second

// behindRecheck is how often a zone another server recorded with other records from further in
// STATE is looked at again while this server has not read as far.
const behindRecheck = 250 * time.Millisecond

// peerRefusalWindow is how often the refused records of one server are logged at most.
const peerRefusalWindow = time.Minute

// peerVersion is a version of a zone that another DNS server recorded.
type peerVersion struct {
	zone     string
	serial   uint32
	digest   string // "" when the record has none (an older server's)
	stateSeq uint64
	server   string // peerName of its writer and id
	// writer is the writer its subject names ("": server's alone), whose last version of a
	// zone the clock keeps beside every other writer's (see peerClock.latest).
	writer string
}

// ownVersion is a zone as this server serves it: its serial, the digest of its records, the
// sequence of the last STATE event folded (position) and what it was when the records were made
// (since): the records are those of every position from since to position.
type ownVersion struct {
	serial          uint32
	digest          func() string
	position, since uint64
}

// peerClock keeps, per zone, the highest serial other servers recorded and each writer's
// highest version, and decides the re-stamps. Pure: time comes from its callers. Only the
// refresher uses it.
type peerClock struct {
	// self is this server's peerName, which breaks the tie between versions at one position.
	self    string
	highest map[string]peerVersion
	// latest holds, per zone, each writer's highest version: a re-stamp is asked for by any of
	// them, so that one writer's record (at the serial of another's with older records, with
	// this server's digest or from a position far ahead) cannot hide another's. One per
	// writer, not per id a record claims, which any DNS user may vary at will.
	latest map[string]map[string]peerVersion
	// asked is when a zone's re-stamp was first asked for (see restampGrace), restamped when
	// it last took one.
	asked, restamped map[string]time.Time
	// unserved counts, per writer, the zones its versions brought into highest while this
	// server did not serve them (see admits).
	unserved map[string]int
	// ahead holds, per zone, the highest of the serials a secondary was found holding and the
	// zone passed (ahead.go) and the serial it served when the server started (one that passed
	// a secondary in an earlier run): a zone migrated from another primary serves serials years
	// past the clock, and the other servers', which pass the same secondaries', count up to
	// maxPeerLead past it as they do past the clock.
	ahead map[string]uint32
}

func newPeerClock(self string) *peerClock {
	return &peerClock{self: self, highest: map[string]peerVersion{}, latest: map[string]map[string]peerVersion{},
		asked: map[string]time.Time{}, restamped: map[string]time.Time{}, unserved: map[string]int{}, ahead: map[string]uint32{}}
}

// runsPast records that the zone name's serials run past serial: a secondary's it passed, or
// the one it served at the start (see ahead).
func (c *peerClock) runsPast(name string, serial uint32) {
	if a, ok := c.ahead[name]; !ok || serialAfter(serial, a) {
		c.ahead[name] = serial
	}
}

// see folds v, observed at now, and reports whether it counts: a serial more than maxPeerLead
// past the clock does not, or past the serial of a secondary the zone passed or the one it
// served at the start, when later.
func (c *peerClock) see(v peerVersion, now time.Time) bool {
	from := uint32(now.Unix())
	if a, ok := c.ahead[v.zone]; ok && serialAfter(a, from) {
		from = a
	}
	if serialAfter(v.serial, from+maxPeerLead) {
		return false
	}
	// At one serial a version with a digest wins over a push, which says less.
	higher := func(h peerVersion, ok bool) bool {
		return !ok || serialAfter(v.serial, h.serial) || v.serial == h.serial && (v.digest != "" || h.digest == "")
	}
	if h, ok := c.highest[v.zone]; higher(h, ok) {
		c.highest[v.zone] = v
	}
	writer := cmp.Or(v.writer, v.server)
	if c.latest[v.zone] == nil {
		c.latest[v.zone] = map[string]peerVersion{}
	}
	if h, ok := c.latest[v.zone][writer]; higher(h, ok) {
		c.latest[v.zone][writer] = v
	}
	return true
}

// maxUnservedPeerZones is how many zones not served the clock keeps of each writer: any DNS
// server's credentials may record versions of any zone on its own subjects, a million of them
// within the DNS stream's bound, and each kept costs every other server memory for as long as
// it runs. The zones a reload adds are a few. The bound is each writer's, not one for all: a
// zone a reload adds is recorded first by the servers the reload reached first, each once, and
// its first version here must pass their serials whatever zones another writer recorded.
const maxUnservedPeerZones = 4096

// admits reports whether the clock takes v: always a version of a zone it holds or of one of
// served (the zones served, by name), one of another zone while v's writer brought fewer than
// maxUnservedPeerZones of them into the clock, which counts it then (a version see refuses
// after counts too, against its writer alone).
func (c *peerClock) admits(v peerVersion, served map[string]uint32) bool {
	if _, ok := c.highest[v.zone]; ok {
		return true
	}
	if _, ok := served[v.zone]; ok {
		return true
	}
	writer := cmp.Or(v.writer, v.server)
	if c.unserved[writer] >= maxUnservedPeerZones {
		return false
	}
	c.unserved[writer]++
	return true
}

// floor returns the highest serial other servers recorded of the zone name, which its next
// version passes.
func (c *peerClock) floor(name string) (uint32, bool) {
	if c == nil {
		return 0, false
	}
	v, ok := c.highest[name]
	return v.serial, ok
}

// restamp reports whether the zone name, as served (own), must take a serial after the highest
// serial recorded of it, at now, and which; when it must but only after restampGrace, or
// restampEvery since its last re-stamp, or may once it has read as far as the other
// (behindRecheck), wait says how long until it may be asked again.
func (c *peerClock) restamp(name string, own ownVersion, now time.Time) (past uint32, ok bool, wait time.Duration) {
	// Each writer's version is weighed alone; any one asking for a re-stamp has it.
	asks, behind := false, false
	for _, v := range c.latest[name] {
		switch {
		case serialAfter(own.serial, v.serial), v.digest == "", v.digest == own.digest(),
			// This server's records were the same at the other's position: the configurations
			// differ, which no position tells apart, and the higher name re-stamps.
			v.stateSeq >= own.since && v.stateSeq <= own.position && v.server > c.self:
		case v.stateSeq > own.position:
			// The other has read further: this server's next version passes its serial, if
			// the zone changes meanwhile; if it does not (other configurations), the zone is
			// looked at again once this server has read as far.
			behind = true
		default:
			asks = true
		}
	}
	switch {
	case !asks && behind:
		delete(c.asked, name)
		return 0, false, behindRecheck
	case !asks:
		delete(c.asked, name)
		return 0, false, 0
	}
	v := c.highest[name]
	asked, ok := c.asked[name]
	if !ok {
		c.asked[name], asked = now, now
	}
	due := asked.Add(restampGrace)
	if last, ok := c.restamped[name]; ok && last.Add(restampEvery).After(due) {
		due = last.Add(restampEvery)
	}
	if now.Before(due) {
		return 0, false, due.Sub(now)
	}
	delete(c.asked, name)
	c.restamped[name] = now
	return v.serial, true, 0
}

// peerName is the name of the server of id that writes on writer's subjects (events.ZoneSubject)
// among the DNS servers, as the clock compares them: the writer first, which the subject names
// and only that server's NATS user may publish under (deployments/nats/accounts.conf), and the
// id, which a record claims, only to tell apart servers sharing a writer (one name without
// NATS users). So a record claiming another server's id carries its writer's weight, not that
// server's.
func peerName(writer, id string) string { return writer + "/" + id }

// peerSelf is what peerVersionOf tells this server's own records by.
type peerSelf struct {
	id, writer string
	// key is this run's IDKey, which derived the ids of its versions, and firstOwn the stream
	// sequence of the first of them read (0: none yet). A record under id on writer's subjects
	// that key did not derive is an earlier run's if the stream holds it before firstOwn, and a
	// copy's if after: the stream's order, not the dates the records carry, which a clock set
	// back between two runs would make the earlier run's later than this one's start.
	key      events.IDKey
	firstOwn uint64
}

// peerRecord is what peerVersionOf made of a message.
type peerRecord int

const (
	// recordIgnored is no version of another server's: an earlier run's of this server, or
	// anything else.
	recordIgnored peerRecord = iota
	// recordOwn is a version this run recorded.
	recordOwn
	// recordOfPeer is a version of another server's.
	recordOfPeer
	// recordOurIDElsewhere is a version under this server's id on another writer's subject: from a
	// server whose data dir was copied from this one's, or forged. It counts as that writer's.
	recordOurIDElsewhere
	// recordOurIDCopied is a version under this server's id, on its own subject and after this
	// run's first in the stream, that this run did not record: from a server whose data dir and
	// credentials were copied from this one's.
	recordOurIDCopied
)

// peerVersionOf reads one message of the DNS stream: a version of a zone that a server other
// than self recorded on subject, its own for the zone; or, on a subject of a writer other than
// self's, a push of the zone to its primary (pushed or failed), which names a serial its server
// served and comes after the version on the subject, so that it is the last message a start
// reads there: it counts as a version without a digest, by the writer's name alone. Anything
// else (an event that does not decode, a zone that is not its subject's, this server's own) is
// not; nor is a version under this server's id, which it tells apart by the message's stream
// sequence seq (see peerRecord).
func peerVersionOf(subject string, data []byte, seq uint64, self peerSelf) (peerVersion, peerRecord) {
	tok := events.SplitSubject(subject, "detour.dns")
	if len(tok) != 2 {
		return peerVersion{}, recordIgnored
	}
	env, err := events.Decode(data)
	if err != nil {
		return peerVersion{}, recordIgnored
	}
	// Only the fields the clock reads: a version of thousands of changes is scanned, not kept.
	var zc struct {
		Zone     string `json:"zone"`
		Serial   uint32 `json:"serial"`
		Server   string `json:"server"`
		Digest   string `json:"digest"`
		StateSeq uint64 `json:"state_seq"`
		Part     int    `json:"part"`
	}
	switch env.Type {
	case events.TypeZoneChanged:
		if err := env.Payload(&zc); err != nil || zc.Server == "" {
			return peerVersion{}, recordIgnored
		}
	case events.TypeZonePushed, events.TypeZonePushFailed:
		if tok[1] == self.writer {
			return peerVersion{}, recordIgnored
		}
		var p struct {
			Zone   string `json:"zone"`
			Serial uint32 `json:"serial"`
		}
		if err := env.Payload(&p); err != nil {
			return peerVersion{}, recordIgnored
		}
		zc.Zone, zc.Serial = p.Zone, p.Serial
	default:
		return peerVersion{}, recordIgnored
	}
	if zc.Zone == "" || events.ZoneToken(zc.Zone) != tok[0] {
		return peerVersion{}, recordIgnored
	}
	v := peerVersion{zone: zone.Canonical(zc.Zone), serial: zc.Serial, digest: zc.Digest, stateSeq: zc.StateSeq, server: peerName(tok[1], zc.Server), writer: tok[1]}
	switch {
	case zc.Server != self.id:
		return v, recordOfPeer
	case tok[1] != self.writer:
		return v, recordOurIDElsewhere
	case self.key.Derives(env, changeKey(env.Source, zc.Server, zc.Zone, zc.Serial, zc.Part)):
		return peerVersion{}, recordOwn
	case self.firstOwn == 0 || seq < self.firstOwn:
		return peerVersion{}, recordIgnored // an earlier run's
	default:
		return v, recordOurIDCopied
	}
}

// followPeers follows the versions other DNS servers record of every zone, from the last one
// of each subject, and hands them to the refresher (see restamps), until ctx ends.
func (s *Server) followPeers(ctx context.Context) {
	f := events.Follower{JS: s.o.JS, Stream: events.StreamDNS, Reader: "peers", Log: s.log,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectDNS}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	self := peerSelf{id: s.id, writer: s.writer, key: s.idKey}
	f.Run(ctx, func(d events.Delivery) {
		if d.Recreated {
			self.firstOwn = 0 // the new stream's sequences start over
		}
		if d.Msg == nil {
			return
		}
		v, rec := peerVersionOf(d.Subject, d.Data, d.Seq, self)
		if _, served := s.table.Load().serials[v.zone]; served && rec != recordIgnored && rec != recordOwn {
			// A secondary may hold this version: an IXFR from its serial needs this server's
			// records there to be the same (see versionDigests).
			s.digests.other(v.zone, v.writer, v.serial, v.digest)
		}
		switch rec {
		case recordIgnored:
			return
		case recordOwn:
			if self.firstOwn == 0 {
				self.firstOwn = d.Seq
			}
			return
		case recordOurIDElsewhere:
			// Counted still: a copy under its own NATS user is a master whose serials a
			// secondary may hold, and a forger gains nothing that another id would not give it.
			s.peerRefusals.Gate(s.log.Warn(), "elsewhere "+v.writer).Str("subject", d.Subject).Str("server_id", s.id).
				Msg("a version on another dns server's subject names this server's id; counted as that server's: its data dir was copied from this one's (remove dns-server-id from it and restart it), or the record is forged")
		case recordOurIDCopied:
			s.peerRefusals.Gate(s.log.Error(), "copied "+v.zone).Str("zone", v.zone).Str("subject", d.Subject).Str("server_id", s.id).
				Msg("another dns server records versions under this server's id and credentials: its data dir was copied from this one's, and the two never pass each other's serials; stop it, remove dns-server-id from its data dir and start it again")
			return
		}
		s.peerMu.Lock()
		s.peerSeen[peerKey{zone: v.zone, server: v.server}] = v
		s.peerMu.Unlock()
		select {
		case s.peerPoke <- struct{}{}:
		default: // already poked
		}
	})
}

// peerKey is a zone of one other server (its peerName): the refresher is handed the last
// version of each.
type peerKey struct{ zone, server string }

// restamps folds the versions other servers recorded since the last call into the projector's
// clock, and returns the zones served that must be re-stamped, each with the serial to pass,
// and how long until a zone held back (restampGrace, restampEvery) may be (0: none is). Only
// the refresher calls it.
func (s *Server) restamps(now time.Time) (map[string]uint32, time.Duration) {
	s.peerMu.Lock()
	seen := s.peerSeen
	s.peerSeen = map[peerKey]peerVersion{}
	s.peerMu.Unlock()
	check := s.peerHeld
	s.peerHeld = map[string]bool{}
	served := s.table.Load().serials
	for _, k := range slices.SortedFunc(maps.Keys(seen), func(a, b peerKey) int {
		return cmp.Or(cmp.Compare(a.zone, b.zone), cmp.Compare(a.server, b.server))
	}) {
		v := seen[k]
		if !s.proj.peers.admits(v, served) {
			s.peerRefusals.Gate(s.log.Warn(), "zones of "+v.writer).Str("zone", v.zone).Str("writer", v.writer).Int("kept", maxUnservedPeerZones).
				Msg("another dns server recorded versions of more zones this server does not serve than it keeps; ignored")
			continue
		}
		if !s.proj.peers.see(v, now) {
			s.peerRefusals.Gate(s.log.Warn(), "ahead of "+v.writer).Str("zone", v.zone).Str("server", v.server).Uint32("serial", v.serial).
				Msg("another dns server recorded a serial more than a day past the clock; ignored")
			continue
		}
		// A zone not served is kept too: the record, the last of its subject, comes once, and
		// the zone's first version, if a reload adds it, must pass it.
		if _, ok := served[v.zone]; ok {
			check[v.zone] = true
		}
	}
	if len(check) == 0 {
		return nil, 0
	}
	if !s.synced {
		// Before the state is read to its end this server's records may be old: the zones are
		// looked at again once it is, and its versions made meanwhile pass the others' serials.
		maps.Copy(s.peerHeld, check)
		return nil, restampEvery
	}
	zones := map[string]*zone.Zone{}
	for _, z := range s.table.Load().zones {
		if check[z.Name] {
			zones[z.Name] = z
		}
	}
	out := map[string]uint32{}
	var next time.Duration
	for name := range check {
		z := zones[name]
		if z == nil {
			continue
		}
		own := ownVersion{serial: z.Serial, position: s.proj.position, since: s.proj.since[name], digest: func() string { return s.proj.digestOf(z) }}
		past, ok, wait := s.proj.peers.restamp(name, own, now)
		switch {
		case ok:
			out[name] = past
		case wait > 0:
			s.peerHeld[name] = true
			if next == 0 || wait < next {
				next = wait
			}
		}
	}
	return out, next
}

// restamp gives each zone of past a serial after the one given and NOTIFYs, at the next
// refresh, which it asks for, and starts a new IXFR history there (see zoneChange.unstepped).
// Only the refresher calls it.
func (s *Server) restamp(past map[string]uint32) {
	s.projMu.Lock()
	s.proj.pass(past, true)
	s.projMu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(past)) {
		s.log.Info().Str("zone", name).Uint32("recorded_serial", past[name]).
			Msg("another dns server recorded this zone at or after this serial with older records; the zone takes a later one")
	}
}

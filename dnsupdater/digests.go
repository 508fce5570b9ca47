package dnsupdater

import (
	"slices"
	"sync"
)

// Which serials an IXFR starts from. A secondary listing several DNS servers as masters holds
// the serial it transferred last, from whichever of them. Each server takes its serials by
// itself, so two may record one serial with other records (a burst of STATE events batched
// otherwise, one server behind or on another configuration), and this server's changes from
// its own version there are no changes from the other's: applied to the other's records, they
// leave the secondary with records neither server serves, until a later change happens to
// touch them (a failover it never applies). So an IXFR from a serial that another server
// recorded with records other than this server's gets the whole zone, which RFC 1995 §4
// allows; one from a serial only this server recorded, or that both recorded with the same
// records, gets the changes.

// keptDigests is how many serials of a zone the digests of one writer are kept for: twice the
// versions IXFR can start from (maxDeltas), so that a server making versions faster than this
// one (re-stamps, another configuration) does not push out a serial still in this one's history.
const keptDigests = 2 * maxDeltas

// mixedDigests is the digest kept for a serial that one writer recorded with other records
// twice (two servers sharing a name, a copied data dir): it matches no version.
const mixedDigests = "mixed"

// versionDigests keeps the digests (zone.Digest) of the recent versions of each zone served: this
// server's, and those each other writer of the DNS stream recorded, by serial. The reporter
// notes this server's as it records them, the reader of the stream those of earlier runs, the
// follower of the others' versions theirs, and transfers ask it where an IXFR may start from.
// Safe for concurrent use.
type versionDigests struct {
	mu    sync.Mutex
	zones map[string]*zoneDigests
}

// zoneDigests is what versionDigests keeps of one zone: this server's digests, and each other
// writer's (events.ZoneSubject's token) by writer.
type zoneDigests struct {
	own    digestLog
	others map[string]*digestLog
}

// digestLog holds one writer's digests of a zone by serial, those of its latest keptDigests
// serials (RFC 1982), in whatever order they were noted: a start reads them newest first.
type digestLog struct {
	digests map[uint32]string
	order   []uint32 // the serials kept, oldest first
}

func newVersionDigests() *versionDigests {
	return &versionDigests{zones: map[string]*zoneDigests{}}
}

// note keeps digest for serial. A digest already kept there wins over none ("": a push, or an
// older server's version), which a digest replaces; two digests at one serial keep
// mixedDigests.
func (l *digestLog) note(serial uint32, digest string) {
	if l.digests == nil {
		l.digests = map[uint32]string{}
	}
	kept, ok := l.digests[serial]
	switch {
	case !ok:
		if len(l.order) == keptDigests && serialAfter(l.order[0], serial) {
			return // older than every serial kept
		}
		i := len(l.order)
		for i > 0 && serialAfter(l.order[i-1], serial) {
			i--
		}
		l.order = slices.Insert(l.order, i, serial)
		if len(l.order) > keptDigests {
			delete(l.digests, l.order[0])
			l.order = slices.Delete(l.order, 0, 1)
		}
	case digest == "" || digest == kept:
		return
	case kept != "":
		digest = mixedDigests
	}
	l.digests[serial] = digest
}

// zone returns what is kept of the zone name, made if need be. The caller holds mu.
func (d *versionDigests) zone(name string) *zoneDigests {
	z := d.zones[name]
	if z == nil {
		z = &zoneDigests{others: map[string]*digestLog{}}
		d.zones[name] = z
	}
	return z
}

// own notes that this server served zone name at serial with the records of digest.
func (d *versionDigests) own(name string, serial uint32, digest string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zone(name).own.note(serial, digest)
}

// other notes that another server, writing on writer's subjects, recorded zone name at serial
// with the records of digest ("": it does not say which).
func (d *versionDigests) other(name, writer string, serial uint32, digest string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	z := d.zone(name)
	l := z.others[writer]
	if l == nil {
		l = &digestLog{}
		z.others[writer] = l
	}
	l.note(serial, digest)
}

// forget drops what is kept of the zone name (a reload removed it).
func (d *versionDigests) forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.zones, name)
}

// steps reports whether an IXFR of zone name from serial may answer with this server's changes
// from its version there: no other server recorded serial, or every one that did recorded it
// with this server's records, as far as both are known. A nil d knows of no other server.
func (d *versionDigests) steps(name string, serial uint32) bool {
	return d.recordedOtherwise(name, serial) == ""
}

// recordedOtherwise returns the first by name of the writers that recorded zone name at serial
// with other records than this server's, or without saying which, or at a serial whose records
// this server does not know; "" when none did, and steps goes.
func (d *versionDigests) recordedOtherwise(name string, serial uint32) string {
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	z := d.zones[name]
	if z == nil {
		return ""
	}
	own, known := z.own.digests[serial]
	first := ""
	for writer, l := range z.others {
		if digest, ok := l.digests[serial]; ok && (!known || digest != own || digest == "" || digest == mixedDigests) && (first == "" || writer < first) {
			first = writer
		}
	}
	return first
}

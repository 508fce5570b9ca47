package dnsupdater

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/source"
	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/miekg/dns"
)

// Secondaries ahead. A zone migrated from BIND or NSD keeps its secondaries, which hold the old
// primary's serial, often a date (2026120801): later, in serial number arithmetic (RFC 1982),
// than Detour's, which follow the clock (1.8e9 in 2026). Such a secondary ignores every NOTIFY
// and refresh until Detour's serial passes its own, years later, and answers stale through
// every failover meanwhile.
//
// So after each NOTIFY a secondary acknowledges without having transferred the serial meanwhile
// (in practice every NOTIFY: a secondary answers it before it asks for the transfer; a start
// NOTIFYs every zone with secondaries, so this covers a start too), the server asks it for the
// zone's SOA: over UDP, over TCP when truncated, aheadWait each, from the address it NOTIFYs
// from, to the address the notify list names (no resolver), signed with the zone's transfer key
// when it has one, whose signature the answer must then carry. A serial more than maxPeerLead
// past the one served (or the clock, when later) makes the zone take a later one, as a re-stamp
// past another DNS server's does (peers.go): the same records at a serial after the
// secondary's, NOTIFYed, so that it transfers them (by AXFR: no IXFR step leads from its
// serial). A serial less far ahead is left: another DNS server's serials run no further ahead
// (a restart's reservation, versions faster than one a second), and its records, not the
// secondary's serial, tell whether to pass them (peers.go); passing them would take a new
// serial, and every secondary an AXFR of every zone, whenever one of two servers restarts on
// the records the other serves at a later serial.
//
// A broken or hostile secondary must not carry the serials off (aheadGuard): each secondary of
// a zone moves its serial once per run at most, and the re-stamps of a run never take a zone's
// serial further than one step of RFC 1982 (2^31 - 1) past the serial it served before the
// first, so that a secondary that missed every re-stamp still takes the last one as later, nor,
// whatever the runs (a crash loop), past the clock.
// A refusal is logged once per zone and secondary, a re-stamp at info.
//
// Another DNS server of the zone finds the same secondaries ahead, and passes them too: the
// serials each then records, years past the clock, count for the other (peers.go) up to
// maxPeerLead past the highest secondary's serial the zone passed, or past the serial it
// served when the server started (a restart after the zone passed one), as they count up to
// that past the clock.

// aheadWait is how long a secondary has to answer an SOA query, once over UDP and once over
// TCP when the answer is truncated.
const aheadWait = time.Second

// maxAheadQueries bounds the SOA queries to secondaries in flight at once: a start NOTIFYs
// every zone to every secondary, each acknowledgement asking for one.
const maxAheadQueries = 16

// zoneTarget is one secondary (an address and port of a notify list) of one zone.
type zoneTarget struct{ zone, target string }

// aheadVerdict is what aheadGuard.check makes of a secondary's serial.
type aheadVerdict int

const (
	// aheadNot: the secondary's serial is not after the one served; nothing to do.
	aheadNot aheadVerdict = iota
	// aheadNear: the secondary's serial is after the one served, but no more than maxPeerLead
	// past it or the clock: another DNS server's (peers.go), or one the clock passes within a
	// day; left to them.
	aheadNear
	// aheadPass: the zone takes a serial after the secondary's.
	aheadPass
	// aheadAgain: the secondary moved the zone's serial already this run; refused.
	aheadAgain
	// aheadTooFar: a serial after the secondary's would be more than one step of RFC 1982 past
	// the serial served before the run's first re-stamp, the one served or the clock; refused.
	aheadTooFar
)

// aheadGuard decides which secondaries' serials a zone passes (see the bounds above). Pure;
// only the refresher uses it.
type aheadGuard struct {
	// base is, per zone, the serial it served before its first re-stamp past a secondary.
	base map[string]uint32
	// passed holds the secondaries each zone was re-stamped past; told those whose refusal was
	// logged.
	passed, told map[zoneTarget]bool
}

func newAheadGuard() *aheadGuard {
	return &aheadGuard{base: map[string]uint32{}, passed: map[zoneTarget]bool{}, told: map[zoneTarget]bool{}}
}

// check weighs the serial theirs that the secondary zt holds against own, the zone's serial
// served, at now, and records a pass.
func (g *aheadGuard) check(zt zoneTarget, own, theirs uint32, now time.Time) aheadVerdict {
	if !serialAfter(theirs, own) {
		return aheadNot
	}
	near, clock := own, uint32(now.Unix())
	if serialAfter(clock, near) {
		near = clock
	}
	if !serialAfter(theirs, near+maxPeerLead) {
		return aheadNear
	}
	if g.passed[zt] {
		return aheadAgain
	}
	base, ok := g.base[zt.zone]
	if !ok {
		base = own
	}
	if !serialAfter(theirs+1, base) || !serialAfter(theirs+1, own) || !serialAfter(theirs+1, clock) {
		return aheadTooFar
	}
	g.base[zt.zone], g.passed[zt] = base, true
	return aheadPass
}

// tell reports whether a refusal of zt is to be logged: the first one only.
func (g *aheadGuard) tell(zt zoneTarget) bool {
	if g.told[zt] {
		return false
	}
	g.told[zt] = true
	return true
}

// aheadWatch asks secondaries for their serials, and hands the refresher those ahead.
type aheadWatch struct {
	mu sync.Mutex
	// asked holds the secondaries to query, queued in order, each once.
	asked map[zoneTarget]bool
	queue []zoneTarget
	wake  chan struct{}
	// found holds the serials of secondaries found after the one served, for the refresher,
	// which poke wakes.
	found map[zoneTarget]uint32
	poke  chan struct{}
	// guard is the refresher's.
	guard *aheadGuard
}

func newAheadWatch() *aheadWatch {
	return &aheadWatch{asked: map[zoneTarget]bool{}, wake: make(chan struct{}, 1), found: map[zoneTarget]uint32{},
		poke: make(chan struct{}, 1), guard: newAheadGuard()}
}

// ask queues an SOA query of the zone to target, unless one is queued already. It never blocks,
// and does nothing on a nil w (a server that only sends, in tests).
func (w *aheadWatch) ask(zone, target string) {
	if w == nil {
		return
	}
	zt := zoneTarget{zone: zone, target: target}
	w.mu.Lock()
	if !w.asked[zt] {
		w.asked[zt] = true
		w.queue = append(w.queue, zt)
	}
	w.mu.Unlock()
	signal(w.wake)
}

// take returns the queries queued, and forgets them.
func (w *aheadWatch) take() []zoneTarget {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue, w.asked = nil, map[zoneTarget]bool{}
	return q
}

// ahead records that zt holds serial, after the one served, and pokes the refresher.
func (w *aheadWatch) ahead(zt zoneTarget, serial uint32) {
	w.mu.Lock()
	w.found[zt] = serial
	w.mu.Unlock()
	signal(w.poke)
}

// takeFound returns the serials found ahead since the last call.
func (w *aheadWatch) takeFound() map[zoneTarget]uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.found
	w.found = map[zoneTarget]uint32{}
	return f
}

// signal sends on ch (buffered, one) unless a signal waits already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// watchAhead runs the SOA queries asked for, maxAheadQueries at once, until ctx ends, and hands
// the refresher the serials after the ones served.
func (s *Server) watchAhead(ctx context.Context) {
	sem := make(chan struct{}, maxAheadQueries)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ahead.wake:
		}
		for _, zt := range s.ahead.take() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				serial, err := s.secondarySerial(ctx, zt)
				if err != nil {
					s.log.Debug().Err(err).Str("zone", zt.zone).Str("secondary", zt.target).Msg("secondary serial not read")
					return
				}
				if own, ok := s.table.Load().serials[zt.zone]; ok && serialAfter(serial, own) {
					s.ahead.ahead(zt, serial)
				}
			})
		}
	}
}

// errNoSOA is an answer to the SOA query that does not give the zone's serial.
var errNoSOA = errors.New("no authoritative soa of the zone in the answer")

// errAheadUnsigned is an answer to an SOA query signed with the zone's transfer key that the
// key did not sign: it may come from anyone (RFC 8945 §5.3), and moves no serial.
var errAheadUnsigned = errors.New("the answer is not signed with the zone's transfer key")

// secondarySerial asks the secondary zt.target for the SOA of zt.zone, over UDP, then TCP when
// the answer is truncated, from the address NOTIFYs leave from, and returns its serial. A zone
// with a transfer key signs the query with it, as its NOTIFY, and believes only an answer the
// key signed.
func (s *Server) secondarySerial(ctx context.Context, zt zoneTarget) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(zt.zone, dns.TypeSOA)
	var key *tsig.Key
	if z := s.table.Load().zoneFor(zt.zone); z != nil && z.Name == zt.zone {
		key = transferKey(loadKeys(&s.keys), z)
	}
	if key != nil {
		// The query and its answer with one secret, though the key's file rotates meanwhile.
		key = key.Snapshot()
	}
	var r *dns.Msg
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: aheadWait}
		q := m
		if key != nil {
			// Signed afresh each time: sending a message takes its TSIG record out of it, and
			// the query asked again over TCP went unsigned.
			q = m.Copy()
			q.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
			c.TsigProvider = key
		}
		if from, ok := source.For(s.addr, zt.target); ok {
			local := net.Addr(net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
			if network == "tcp" {
				local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
			}
			c.Dialer = &net.Dialer{Timeout: aheadWait, LocalAddr: local}
		}
		err := exchangeUntil(ctx, c, zt.target, func(conn *dns.Conn) error {
			var err error
			r, _, err = c.ExchangeWithConnContext(ctx, q, conn)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("query soa over %s: %w", network, err)
		}
		if !r.Truncated {
			break
		}
	}
	if key != nil && r.IsTsig() == nil { // a signed answer was verified as it was read
		return 0, fmt.Errorf("query soa: %w", errAheadUnsigned)
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return 0, fmt.Errorf("query soa: %s, authoritative %t: %w", dns.RcodeToString[r.Rcode], r.Authoritative, errNoSOA)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && dns.CanonicalName(soa.Hdr.Name) == dns.CanonicalName(zt.zone) {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("query soa: %w", errNoSOA)
}

// passAhead re-stamps the zones some secondary holds at a later serial than the one served,
// past the furthest such serial each, within aheadGuard's bounds, and refreshes: the new
// serial is NOTIFYed like any other. Before the state is read to its end it waits (markSynced
// pokes it again). Only the refresher calls it.
func (s *Server) passAhead(ctx context.Context, saves chan *snapshotSave, snaps *snapshotPacer) {
	if !s.synced {
		return
	}
	found := s.ahead.takeFound()
	served := s.table.Load().serials
	past := map[string]uint32{}
	for _, zt := range slices.SortedFunc(maps.Keys(found), func(a, b zoneTarget) int {
		return cmp.Or(cmp.Compare(a.zone, b.zone), cmp.Compare(a.target, b.target))
	}) {
		own, ok := served[zt.zone]
		if !ok {
			continue
		}
		theirs := found[zt]
		switch s.ahead.guard.check(zt, own, theirs, s.now()) {
		case aheadPass:
			if p, ok := past[zt.zone]; !ok || serialAfter(theirs, p) {
				past[zt.zone] = theirs
			}
			s.proj.peers.runsPast(zt.zone, theirs)
			s.log.Info().Str("zone", zt.zone).Str("secondary", zt.target).Uint32("secondary_serial", theirs).Uint32("serial", own).
				Msg("a secondary holds a later serial of this zone than the one served (a zone migrated from another primary); the zone takes a later one")
		case aheadNear:
			s.log.Debug().Str("zone", zt.zone).Str("secondary", zt.target).Uint32("secondary_serial", theirs).Uint32("serial", own).
				Msg("a secondary holds a serial of this zone less than a day past the one served or the clock; left to the other dns servers and the clock")
		case aheadAgain:
			if s.ahead.guard.tell(zt) {
				s.log.Warn().Str("zone", zt.zone).Str("secondary", zt.target).Uint32("secondary_serial", theirs).Uint32("serial", own).
					Msg("a secondary holds a later serial of this zone again, after the zone passed its serial once; not passed again until a restart: check what else feeds it")
			}
		case aheadTooFar:
			if s.ahead.guard.tell(zt) {
				s.log.Warn().Str("zone", zt.zone).Str("secondary", zt.target).Uint32("secondary_serial", theirs).Uint32("serial", own).
					Msg("a secondary holds a serial of this zone too far ahead to pass in one step of serial arithmetic; not passed: reset its copy of the zone")
			}
		}
	}
	if len(past) == 0 {
		return
	}
	s.projMu.Lock()
	s.proj.pass(past, true)
	s.projMu.Unlock()
	s.refresh(ctx, kick{synced: true}, saves, snaps)
}

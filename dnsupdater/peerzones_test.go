package dnsupdater

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/logs"
	"github.com/rs/zerolog"
)

// TestRecordsOfZonesNotServedAreKeptWithinABound: any DNS server's credentials may record a
// version of any zone on its own subjects, a million zones within the DNS stream's bound, and
// every other DNS server keeps the records of zones it does not serve (a reload may add one,
// whose first version must pass them). It keeps a bounded number of such zones, says so once,
// and still counts the records of the zones it serves.
func TestRecordsOfZonesNotServedAreKeptWithinABound(t *testing.T) {
	out := &eventstest.Logs{}
	s := &Server{peerSeen: map[peerKey]peerVersion{}, peerHeld: map[string]bool{}, proj: &projector{peers: newPeerClock("dns-test/id")},
		log: zerolog.New(out), peerRefusals: logs.NewRepeats(peerRefusalWindow)}
	s.table.Store(&table{serials: map[string]uint32{"demo.test.": 1}})
	now := time.Now()
	const forged = 20000
	for i := range forged {
		name := fmt.Sprintf("z%d.forged.", i)
		s.peerSeen[peerKey{name, "dns-other/x"}] = peerVersion{zone: name, serial: 1, digest: "d", server: "dns-other/x", writer: "dns-other"}
	}
	s.restamps(now)
	s.peerSeen[peerKey{"demo.test.", "dns-other/x"}] = peerVersion{zone: "demo.test.", serial: 7, digest: "d", server: "dns-other/x", writer: "dns-other"}
	s.restamps(now)
	if n := len(s.proj.peers.highest); n >= forged {
		t.Errorf("the clock holds %d zones after records of %d zones not served, want fewer", n, forged)
	}
	if floor, ok := s.proj.peers.floor("demo.test."); !ok || floor != 7 {
		t.Errorf("demo.test.'s highest serial another server recorded = %d (%v), want 7: a zone served counts whatever the others", floor, ok)
	}
	if got := strings.Count(out.String(), "zones this server does not serve"); got != 1 {
		t.Errorf("%d log lines about the zones not served, want 1:\n%.2000s", got, out.String())
	}
}

// TestARecordOfAZoneAReloadAddsCountsWhateverZonesAnotherWriterRecorded: a reload reaches the
// DNS servers one after another, and the first to serve a new zone records its version before
// the others serve it; that record comes once, and each other server's first version of the
// zone must pass its serial. Another DNS user's records of 20,000 zones nobody serves took every
// place kept for zones not served, so that record was dropped: the server, once it served the
// zone, took serials that did not pass the other's (its clock behind, or the other's versions
// faster than one a second), which a secondary holding the other's ignored, after the other
// stopped too. The bound is each writer's.
func TestARecordOfAZoneAReloadAddsCountsWhateverZonesAnotherWriterRecorded(t *testing.T) {
	s := &Server{peerSeen: map[peerKey]peerVersion{}, peerHeld: map[string]bool{}, proj: &projector{peers: newPeerClock("dns-test/id")},
		log: zerolog.Nop(), peerRefusals: logs.NewRepeats(peerRefusalWindow)}
	s.table.Store(&table{serials: map[string]uint32{"demo.test.": 1}})
	now := time.Now()
	for i := range 20000 {
		name := fmt.Sprintf("z%d.forged.", i)
		s.peerSeen[peerKey{name, "dns-other/x"}] = peerVersion{zone: name, serial: 1, digest: "d", server: "dns-other/x", writer: "dns-other"}
	}
	s.restamps(now)
	s.peerSeen[peerKey{"new.test.", "dns-2/y"}] = peerVersion{zone: "new.test.", serial: 9, digest: "d", server: "dns-2/y", writer: "dns-2"}
	s.restamps(now)
	if floor, ok := s.proj.peers.floor("new.test."); !ok || floor != 9 {
		t.Errorf("new.test.'s highest serial dns-2 recorded before this server served it = %d (%v), want 9: dns-other's records of other zones must not drop it", floor, ok)
	}
}

// TestRecordsADayAheadUnderManyIDsAreLoggedOnceAMinutePerWriter: the id a record claims is the
// writer's to choose, so the records a day ahead one DNS user writes under a thousand ids are
// one line a minute, not one per id.
func TestRecordsADayAheadUnderManyIDsAreLoggedOnceAMinutePerWriter(t *testing.T) {
	out := &eventstest.Logs{}
	s := &Server{peerSeen: map[peerKey]peerVersion{}, peerHeld: map[string]bool{}, proj: &projector{peers: newPeerClock("dns-test/id")},
		log: zerolog.New(out), peerRefusals: logs.NewRepeats(peerRefusalWindow)}
	s.table.Store(&table{serials: map[string]uint32{"demo.test.": 1}})
	now := time.Now()
	for i := range 1000 {
		server := peerName("dns-other", fmt.Sprintf("id-%d", i))
		s.peerSeen[peerKey{"demo.test.", server}] = peerVersion{zone: "demo.test.", serial: uint32(now.Unix()) + 2*maxPeerLead, digest: "d", server: server, writer: "dns-other"}
	}
	s.restamps(now)
	if got := strings.Count(out.String(), "more than a day past the clock"); got != 1 {
		t.Errorf("%d log lines about records a day ahead from one writer under 1000 ids, want 1", got)
	}
}

// TestRecordsClaimingThisServersIDOnManyZonesAreOneWarning: another DNS user records, on its
// own subjects of fifty zones, versions that claim this server's id (a forger, or a copy of this
// server's data dir serving many zones): one warning line a minute tells the operator, not one
// per zone.
func TestRecordsClaimingThisServersIDOnManyZonesAreOneWarning(t *testing.T) {
	js := eventstest.Start(t)
	srv, logs := startLogged(t, js, eventstest.Config(t, demoConfig), t.TempDir(), nil)
	eventstest.Eventually(t, 5*time.Second, func() bool { return tableSerial(srv, "demo.test.") != 0 }, "the zone served")
	for i := range 50 {
		apex := fmt.Sprintf("z%d.test.", i)
		zoneChangedOn(t, js, events.ZoneSubject(apex, "dns-copy"), time.Now(), events.ZoneChanged{Zone: apex, Serial: 7, Server: srv.id, Digest: "d"})
	}
	// A record a day ahead from a third server, read after the others, is logged by the
	// refresher once the follower has handed it over: the fifty are read by then.
	zoneChangedOn(t, js, events.ZoneSubject("demo.test.", "dns-third"), time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: uint32(time.Now().Unix()) + 2*maxPeerLead, Server: "id-third", Digest: "d"})
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return logs.Count("another dns server recorded a serial more than a day past the clock; ignored") > 0
	}, "the third server's record read")
	if n := logs.Count("a version on another dns server's subject names this server's id; counted as that server's: its data dir was copied from this one's (remove dns-server-id from it and restart it), or the record is forged"); n != 1 {
		t.Errorf("records claiming this server's id on fifty zones from one writer: %d warning lines, want 1", n)
	}
}

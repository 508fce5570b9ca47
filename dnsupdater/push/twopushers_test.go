package push

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Two DNS servers pushing one primary (two replicas of one configuration, the usual HA setup)
// cost it no more full reads of the owned names than one does. Each minute STATE changes one
// app's address, both servers push the change at once, and each rechecks. Before, each server's gate counted only its own UPDATEs, so the other's moved
// the serial past it: the server holding the marker at a recheck read every owned name nearly
// every minute, 2,000 queries for 1,000 apps, where one server alone reads them every tenth.
func TestOnARealBINDPrimaryTwoPushersOfOneConfigurationReadTheOwnedNamesNoMoreOftenThanOne(t *testing.T) {
	twoReadNoMoreThanOne(t, startBIND(t))
}

func TestOnARealKnotPrimaryTwoPushersOfOneConfigurationReadTheOwnedNamesNoMoreOftenThanOne(t *testing.T) {
	twoReadNoMoreThanOne(t, startKnot(t, ""))
}

// twoReadNoMoreThanOne measures one pusher and then two on the primary at addr, which applies
// UPDATEs signed with testSecret to demo.test and moves its serial by one at each.
func twoReadNoMoreThanOne(t *testing.T, addr string) {
	const names, minutes = 1000, 20
	one := messagesAMinute(t, addr, 1, names, minutes)
	two := messagesAMinute(t, addr, 2, names, minutes)
	t.Logf("%d apps, a change and a recheck a minute over %d minutes: one pusher %v messages a minute (%d full reads), two pushers %v (%d full reads)",
		names, minutes, one.perMinute(minutes), one.fullReads, two.perMinute(minutes), two.fullReads)
	if two.fullReads > one.fullReads+1 {
		t.Errorf("two pushers read every owned name in %d of %d minutes, one pusher in %d: want no more than one more", two.fullReads, minutes, one.fullReads)
	}
	if two.messages > 2*one.messages {
		t.Errorf("two pushers sent the primary %d messages in %d minutes, more than twice one pusher's %d", two.messages, minutes, one.messages)
	}
}

// load is what pushers cost a primary over some minutes: the messages it got, and the minutes
// in which it got a full read of the owned names.
type load struct{ messages, fullReads int }

func (l load) perMinute(minutes int) float64 { return float64(l.messages) / float64(minutes) }

// messagesAMinute runs n pushers of one configuration of names apps to the BIND primary at
// addr through a counting relay: a first push and a recheck, then, each minute of minutes, a
// change of one app's address pushed by every pusher at once, and a recheck of each. It returns
// what those minutes cost the primary.
func messagesAMinute(t *testing.T, addr string, n, names, minutes int) load {
	var mu sync.Mutex
	count := 0
	relay := startRelay(t, addr, func(*dns.Msg) func() {
		mu.Lock()
		defer mu.Unlock()
		count++
		return nil
	})
	counted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
	cfg := parsePushConfig(t, relay)
	var ps []*Pusher
	for i := range n {
		p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: fmt.Sprintf("dns-%d", i), Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	seq := uint64(1000 * n) // a position past every earlier run's on this primary
	state := func(recheck bool) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		for i := range names {
			own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
		}
		own(rrsets, "app-0.demo.test.", fmt.Sprintf("10.1.%d.%d", seq/250, seq%250+1))
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}, Recheck: recheck}
	}
	// offer has each pusher push the state at once, as servers following one STATE do: the
	// first to reach the primary wins, the others find its marker.
	offer := func(recheck bool) {
		t.Helper()
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Go(func() {
				if _, err := p.push(t.Context(), state(recheck)); err != nil {
					t.Errorf("pusher %d at seq %d: %v", i, seq, err)
				}
			})
		}
		wg.Wait()
	}
	// The first push of each pusher rewrites every name: one after the other, as the second
	// would otherwise wait out the first's claim of its push in parts.
	for _, p := range ps {
		if _, err := p.push(t.Context(), state(false)); err != nil {
			t.Fatal(err)
		}
	}
	offer(true)
	var l load
	for range minutes {
		before := counted()
		seq++
		offer(false)
		offer(true)
		got := counted() - before
		l.messages += got
		if got >= names {
			l.fullReads++
		}
	}
	return l
}

// The serial a marker says its update left reads back as written, and a marker without one
// (another version's) reads as saying none.
func TestAMarkersSerialReadsBackAsWritten(t *testing.T) {
	with := mark{at: Position{Seq: 10, Created: testStream}, digest: "0123", server: "dns-a", run: "a1", serial: 4294967295, serialSet: true}
	without := with
	without.serial, without.serialSet = 0, false
	for _, m := range []mark{with, without} {
		rr := m.rr(markerName)
		if got, ok := parseMark(rr); !ok || got != m {
			t.Errorf("%v read back as %+v, %v; want %+v", rr, got, ok, m)
		}
	}
	if !strings.Contains(with.rr(markerName).String(), `"serial=4294967295"`) {
		t.Errorf("%v does not say its serial", with.rr(markerName))
	}
}

// A hand edit at an owned name is put back by the server left running when the other server of
// one configuration, whose marker the primary holds, has stopped: before, the survivor's
// rechecks stood aside for that marker (its position is the survivor's), and the edit stayed on
// the primary, and its secondaries, until STATE next changed the zone's records, for days on a
// quiet system. A recheck now stands aside for another server's marker of its records only
// while the primary's serial is the one that marker says its update left.
func TestOnARealBINDPrimaryAHandEditIsPutBackThoughTheServerHoldingTheMarkerStopped(t *testing.T) {
	t.Parallel()
	addr := startBIND(t)
	cfg := parsePushConfig(t, addr)
	logs := &eventstest.Logs{}
	var ps []*Pusher
	for _, name := range []string{"dns-a", "dns-b"} {
		p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: name, Log: zerolog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	survivor, stopped := ps[0], ps[1]
	rrsets := map[zone.Key][]dns.RR{}
	for i := range 10 {
		own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
	}
	want := Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}
	// Both push the state at start; the one that stops pushed last, and its marker stays.
	for _, p := range []*Pusher{survivor, stopped} {
		if _, err := p.push(t.Context(), want); err != nil {
			t.Fatal(err)
		}
	}

	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "app-7.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}}})
	edit.Insert([]dns.RR{aRecord("app-7.demo.test.", "192.0.2.66")})
	updateByHand(t, addr, "edit app-7 by hand", edit)

	want.Recheck = true
	for range ownedReadEvery + 1 {
		if _, err := survivor.push(t.Context(), want); err != nil {
			t.Fatal(err)
		}
	}
	if got := ask(t, addr, "app-7.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app-7 after %d rechecks of the server left running: %v, want the pushed [10.0.0.1]", ownedReadEvery+1, got)
	}
}

// A hand edit made after a restarted server pushed a zone too large for one UPDATE is put back
// at its next recheck. That first push rewrites every owned name as the primary holds it
// already, so BIND applies the parts between the first and the last as no change and leaves
// its serial where it was for them: the serial the push leaves is not the one it started from
// moved by one a part. Before, its marker said that one all the same, and once other updates
// (an ACME client's challenges, say) and a hand edit moved the zone to it, the serial was taken
// for the push's own: the recheck read none of the owned names, and the edit stayed.
func TestOnARealBINDPrimaryAHandEditAfterARestartedServersPushInPartsIsPutBack(t *testing.T) {
	t.Parallel()
	addr := startBIND(t)
	relay, updates := startCountingRelay(t, addr, dns.OpcodeUpdate)
	cfg := parsePushConfig(t, relay)
	rrsets := map[zone.Key][]dns.RR{}
	for i := range 2000 {
		own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), "10.0.0.1")
	}
	want := Desired{Serial: 10, RRsets: rrsets, State: Position{Seq: 10, Created: testStream}}
	// Each run is a start of the DNS server: a new pusher, knowing nothing of the primary.
	var p *Pusher
	parts := 0
	for range 2 {
		var err error
		if p, err = New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))}); err != nil {
			t.Fatal(err)
		}
		before := updates()
		if _, err := p.push(t.Context(), want); err != nil {
			t.Fatal(err)
		}
		if parts = updates() - before; parts < 3 {
			t.Fatalf("a push of every owned name went in %d UPDATEs, want at least 3", parts)
		}
	}

	for i := range parts - 3 {
		challenge := new(dns.Msg)
		challenge.SetUpdate("demo.test.")
		challenge.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "_acme-challenge.demo.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{fmt.Sprintf("token-%d", i)}}})
		updateByHand(t, addr, "add an ACME challenge", challenge)
	}
	edit := new(dns.Msg)
	edit.SetUpdate("demo.test.")
	edit.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "app-7.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}}})
	edit.Insert([]dns.RR{aRecord("app-7.demo.test.", "192.0.2.66")})
	updateByHand(t, addr, "edit app-7 by hand", edit)

	want.Recheck = true
	if _, err := p.push(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, addr, "app-7.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("app-7 after the recheck: %v, want the pushed [10.0.0.1]", got)
	}
}

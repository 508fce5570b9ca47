package dnsupdater

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// TestANewVersionTakesASerialAfterTheHighestAnotherServerRecorded: another server recorded the
// zone ten minutes ahead of this one's serial (a restart past its reservation, a burst); the
// zone's next version, whatever the clock, passes it, so that a secondary holding it follows.
func TestANewVersionTakesASerialAfterTheHighestAnotherServerRecorded(t *testing.T) {
	cfg := eventstest.Config(t, incrementalConfig)
	p, _, clock := clockedProjector(t, cfg)
	p.peers = newPeerClock("id-a")
	before := servedSerial(t, p.project(), "demo.test.")
	if !p.peers.see(peerVersion{zone: "demo.test.", serial: before + 600, digest: "other", stateSeq: 1, server: "id-b"}, *clock) {
		t.Fatal("a serial ten minutes ahead refused")
	}
	*clock = clock.Add(time.Second)
	a := cfg.Apps[0]
	env, err := events.New(events.TypeEndpointDown, "test", *clock, events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.apply(events.EndpointStateSubject(a.Name, a.Pools[0].Name, a.Pools[0].Endpoints[0].Name), 1, env, nil); err != nil {
		t.Fatal(err)
	}
	zones, changes := p.recompute()
	if len(changes) == 0 {
		t.Fatal("the endpoint down changed no zone")
	}
	if got, want := servedSerial(t, zones, "demo.test."), before+601; got != want {
		t.Fatalf("next version's serial = %d, want %d (after the %d another server recorded; the clock says %d)", got, want, before+600, clock.Unix())
	}
	if p.position != 1 {
		t.Fatalf("position = %d, want 1, the sequence folded", p.position)
	}
}

func servedSerial(t *testing.T, zones []*zone.Zone, name string) uint32 {
	t.Helper()
	for _, z := range zones {
		if z.Name == name {
			return z.Serial
		}
	}
	t.Fatalf("zone %s not projected", name)
	return 0
}

// TestAZoneIsReStampedOnlyWhenAnotherServerHoldsOlderRecordsAtOrAfterItsSerial tables the
// re-stamp rule (see peers.go): this server serves serial 1000, records "mine" made at STATE
// sequence 10 and folded to it, under id "m".
func TestAZoneIsReStampedOnlyWhenAnotherServerHoldsOlderRecordsAtOrAfterItsSerial(t *testing.T) {
	now := time.Unix(1000, 0)
	own := ownVersion{serial: 1000, position: 10, since: 10, digest: func() string { return "mine" }}
	for _, tt := range []struct {
		name  string
		since uint64 // when this server's records were made, if before 10
		peer  peerVersion
		want  bool
	}{
		{name: "the same serial with older records", peer: peerVersion{serial: 1000, digest: "theirs", stateSeq: 9, server: "z"}, want: true},
		{name: "a later serial with older records", peer: peerVersion{serial: 1060, digest: "theirs", stateSeq: 9, server: "z"}, want: true},
		{name: "the same records at a later serial", peer: peerVersion{serial: 1060, digest: "mine", stateSeq: 9, server: "z"}},
		{name: "the same records at the same serial", peer: peerVersion{serial: 1000, digest: "mine", stateSeq: 10, server: "z"}},
		{name: "an earlier serial", peer: peerVersion{serial: 999, digest: "theirs", stateSeq: 9, server: "z"}},
		{name: "newer records: this server's next version passes them", peer: peerVersion{serial: 1060, digest: "theirs", stateSeq: 11, server: "a"}},
		{name: "the same position, a lower id: this one re-stamps", peer: peerVersion{serial: 1000, digest: "theirs", stateSeq: 10, server: "a"}, want: true},
		{name: "the same position, a higher id: the other re-stamps", peer: peerVersion{serial: 1000, digest: "theirs", stateSeq: 10, server: "z"}},
		{name: "no digest (an older server's record)", peer: peerVersion{serial: 1060, stateSeq: 9, server: "z"}},
		{name: "records this server held already at the other's position, a lower id: this one re-stamps", since: 5,
			peer: peerVersion{serial: 1000, digest: "theirs", stateSeq: 9, server: "a"}, want: true},
		{name: "records this server held already at the other's position, a higher id: the other re-stamps", since: 5,
			peer: peerVersion{serial: 1000, digest: "theirs", stateSeq: 9, server: "z"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newPeerClock("m")
			own := own
			if tt.since != 0 {
				own.since = tt.since
			}
			tt.peer.zone = "demo.test."
			if !c.see(tt.peer, now) {
				t.Fatal("refused")
			}
			// Asked for, a re-stamp waits restampGrace for the other to record a newer version.
			if _, got, wait := c.restamp("demo.test.", own, now); got || tt.want != (wait == restampGrace) {
				t.Fatalf("at once: restamp = %v, wait %v; want false, wait %v", got, wait, map[bool]time.Duration{true: restampGrace}[tt.want])
			}
			past, got, _ := c.restamp("demo.test.", own, now.Add(restampGrace))
			if got != tt.want || got && past != tt.peer.serial {
				t.Fatalf("after %v: restamp = %v past %d, want %v past %d", restampGrace, got, past, tt.want, tt.peer.serial)
			}
		})
	}
}

// TestAServerBehindThatRecordsTheRestOfABurstWithinTheGraceAsksForNoReStamp: the other server
// batched a burst otherwise and recorded older records at this server's serial; its next
// version, with this server's records, comes within restampGrace, and nothing is re-stamped.
func TestAServerBehindThatRecordsTheRestOfABurstWithinTheGraceAsksForNoReStamp(t *testing.T) {
	now := time.Unix(1000, 0)
	own := ownVersion{serial: 1000, position: 10, since: 10, digest: func() string { return "mine" }}
	c := newPeerClock("m")
	c.see(peerVersion{zone: "demo.test.", serial: 1000, digest: "theirs", stateSeq: 9, server: "z"}, now)
	if _, ok, wait := c.restamp("demo.test.", own, now); ok || wait != restampGrace {
		t.Fatalf("restamp = %v, wait %v; want false, wait %v", ok, wait, restampGrace)
	}
	c.see(peerVersion{zone: "demo.test.", serial: 1001, digest: "mine", stateSeq: 10, server: "z"}, now.Add(5*time.Millisecond))
	if _, ok, wait := c.restamp("demo.test.", own, now.Add(restampGrace)); ok || wait != 0 {
		t.Fatalf("after the other recorded this server's records: restamp = %v, wait %v; want neither", ok, wait)
	}
}

// TestAZoneIsReStampedAtMostOnceASecond: a peer recording newer serials of older records as
// fast as it can (broken, or forged) makes at most one re-stamp a second, not one a record.
func TestAZoneIsReStampedAtMostOnceASecond(t *testing.T) {
	c := newPeerClock("m")
	start := time.Unix(1000, 0)
	serial, restamps := uint32(1000), 0
	for i := range 100 {
		now := start.Add(time.Duration(i) * 100 * time.Millisecond)
		c.see(peerVersion{zone: "demo.test.", serial: serial, digest: "theirs", stateSeq: 1, server: "z"}, now)
		past, ok, wait := c.restamp("demo.test.", ownVersion{serial: serial, position: 10, since: 10, digest: func() string { return "mine" }}, now)
		if ok {
			restamps++
			serial = NextSerial(past, now)
		} else if wait <= 0 || wait > max(restampEvery, restampGrace) {
			t.Fatalf("at %v: held back for %v", now.Sub(start), wait)
		}
	}
	if restamps == 0 || restamps > 10 {
		t.Fatalf("%d re-stamps in 10s, want 1 to 10", restamps)
	}
}

// TestASerialMoreThanADayPastTheClockIsIgnored: a forged or broken record far ahead neither
// moves the next serial nor asks for a re-stamp; one a day ahead still counts.
func TestASerialMoreThanADayPastTheClockIsIgnored(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newPeerClock("m")
	for _, s := range []uint32{uint32(now.Unix()) + maxPeerLead + 1, uint32(now.Unix()) + 1<<31 - 1, uint32(now.Unix()) + 1<<31 + 5} {
		if c.see(peerVersion{zone: "demo.test.", serial: s, digest: "theirs", server: "z"}, now) {
			t.Errorf("serial %d (%d past the clock) counted", s, s-uint32(now.Unix()))
		}
	}
	if f, ok := c.floor("demo.test."); ok {
		t.Fatalf("floor %d after refused records only", f)
	}
	if _, ok, _ := c.restamp("demo.test.", ownVersion{serial: uint32(now.Unix()), digest: func() string { return "mine" }}, now); ok {
		t.Fatal("a refused record asks for a re-stamp")
	}
	if !c.see(peerVersion{zone: "demo.test.", serial: uint32(now.Unix()) + maxPeerLead, server: "z"}, now) {
		t.Fatal("a serial a day ahead refused")
	}
}

// TestTwoServersWithOtherRecordsDoNotReStampEachOtherInTurn runs two servers that serve one
// zone with other records, at every pair of positions, each seeing every version the other
// records: at most one re-stamp in ten seconds, however their positions compare.
func TestTwoServersWithOtherRecordsDoNotReStampEachOtherInTurn(t *testing.T) {
	for _, pos := range [][2]uint64{{10, 10}, {10, 11}, {11, 10}} {
		type server struct {
			id       string
			clock    *peerClock
			serial   uint32
			position uint64
			digest   string
		}
		start := time.Unix(1000, 0)
		a := &server{id: "id-a", clock: newPeerClock("id-a"), serial: 1000, position: pos[0], digest: "a"}
		b := &server{id: "id-b", clock: newPeerClock("id-b"), serial: 1000, position: pos[1], digest: "b"}
		restamps := 0
		for i := range 100 {
			now := start.Add(time.Duration(i) * 100 * time.Millisecond)
			for _, pair := range [][2]*server{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				to.clock.see(peerVersion{zone: "z.", serial: from.serial, digest: from.digest, stateSeq: from.position, server: from.id}, now)
				if past, ok, _ := to.clock.restamp("z.", ownVersion{serial: to.serial, position: to.position, since: to.position, digest: func() string { return to.digest }}, now); ok {
					restamps++
					to.serial = NextSerial(past, now)
				}
			}
		}
		if restamps > 1 {
			t.Errorf("positions %v: %d re-stamps in 10s, want at most 1", pos, restamps)
		}
	}
}

// TestAServerReStampsAZoneAnotherRecordedAtItsSerialWithOlderRecordsAndIgnoresOneADayAhead
// records, as another DNS server, a forged version of the zone far past the clock, then one at
// the server's own serial with other records folded from less of STATE: the server ignores the
// first (and says so) and serves the second's successor, and NOTIFYs it; its serial stays near
// the clock.
func TestAServerReStampsAZoneAnotherRecordedAtItsSerialWithOlderRecordsAndIgnoresOneADayAhead(t *testing.T) {
	target, got := fakeSecondary(t)
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, withNotify(demoConfig, target))
	srv, logs := startLogged(t, js, cfg, "", nil)
	first := serial(t, srv.Addr())
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	var held uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { held = serial(t, srv.Addr()); return held != first },
		"the server serves the endpoint down")
	record := func(serial uint32) {
		zc := events.ZoneChanged{Zone: "demo.test.", Serial: serial, Changes: []events.RecordChange{}, Server: "id-other", Digest: "other records"}
		e, err := events.New(events.TypeZoneChanged, "dns-other", time.Now(), zc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), js.JS, events.ZoneSubject("demo.test.", "dns-other"), e); err != nil {
			t.Fatal(err)
		}
	}
	record(uint32(time.Now().Unix()) + 2*maxPeerLead)
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "more than a day past the clock") },
		"the server says it ignores the record a day ahead")
	record(held)
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = serial(t, srv.Addr()); return serialAfter(now, held) },
		"the server re-stamps the zone past %d (it serves %d)", held, &now)
	awaitZoneNotify(t, got, "demo.test.", now)
	if lead := int64(now) - time.Now().Unix(); lead > reserveAhead {
		t.Fatalf("serial %d runs %ds ahead of the clock", now, lead)
	}
	if line := "older records; the zone takes a later one"; !strings.Contains(logs.String(), line) {
		t.Errorf("no log line %q", line)
	}
}

// FuzzPeerVersionOf feeds the reader of other servers' records any subject and message: it never
// panics, and what it takes is another server's version of the zone its subject names.
func FuzzPeerVersionOf(f *testing.F) {
	zc := events.ZoneChanged{Zone: "demo.test.", Serial: 7, Changes: []events.RecordChange{}, Server: "id-b", Digest: "d", StateSeq: 3}
	e, err := events.New(events.TypeZoneChanged, "dns-b", time.Unix(0, 0), zc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("detour.dns.demo_test.dns-b", e.Encode())
	f.Add("detour.dns.other_test.dns-b", e.Encode())
	f.Add("detour.dns.demo_test", e.Encode())
	f.Add("detour.dns.demo_test.dns-b", []byte(`{"type":"detour.dns.zone_changed.v1","data":{"zone":"demo.test.","serial":4294967295,"server":"id-a"}}`))
	f.Add("detour.dns.demo_test.dns-b", []byte(`{"type":"detour.dns.zone_changed.v1","data":null}`))
	f.Add("detour.dns.demo_test.dns-b", []byte(`{"type":"detour.dns.pushed.v1","data":{"zone":"demo.test.","serial":7,"server":"192.0.2.1:53"}}`))
	f.Add("detour.dns.demo_test.dns-a", []byte(`{"type":"detour.dns.push_failed.v1","data":{"zone":"demo.test.","serial":7}}`))
	f.Add("detour.dns.demo_test.dns-a", []byte(`{"type":"detour.dns.zone_changed.v1","time":"2026-01-01T00:00:00Z","data":{"zone":"demo.test.","serial":7,"server":"id-a"}}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		v, rec := peerVersionOf(subject, data, 2, peerSelf{id: "id-a", writer: "dns-a", key: events.NewIDKey(), firstOwn: 1})
		if rec == recordIgnored || rec == recordOwn {
			return
		}
		tok := events.SplitSubject(subject, "detour.dns")
		if len(tok) != 2 || events.ZoneToken(v.zone) != tok[0] || !strings.HasPrefix(v.server, tok[1]+"/") {
			t.Fatalf("took %+v from %s", v, subject)
		}
		claimsOurs := v.server == peerName(tok[1], "id-a")
		if rec == recordOfPeer && (claimsOurs || tok[1] == "dns-a" && v.digest == "") || rec != recordOfPeer && !claimsOurs {
			t.Fatalf("took %+v from %s as %d", v, subject, rec)
		}
	})
}

// TestTwoServersOnOtherConfigurationsDoNotReStampEachOtherInTurnWhileStateMoves: one server
// keeps an older configuration (it refused the newer one), so the zone's records differ for as
// long as it does, whatever either folds; STATE meanwhile moves on (other zones' transitions),
// ten events a second. Each re-stamp records the position its server has reached, which the
// other has passed by the time it looks: neither may take that for newer records of its own,
// or each re-stamps the other's re-stamp, a version and a NOTIFY a second for ever. A record
// reaches the other 200 ms after it is made.
func TestTwoServersOnOtherConfigurationsDoNotReStampEachOtherInTurnWhileStateMoves(t *testing.T) {
	type record struct {
		serial   uint32
		position uint64
		at       time.Time // when the other server reads it
	}
	type server struct {
		id       string
		clock    *peerClock
		serial   uint32
		position uint64
		digest   string
		recorded []record // what it recorded, in order
		read     int      // how many of the other's records it has seen
		held     bool     // a re-stamp is waiting (restampGrace, restampEvery)
	}
	start := time.Unix(1000, 0)
	// Both made their version at position 10 with their own configuration, at one serial, and
	// recorded it lead events further (a server that reads STATE late).
	for _, lead := range [][2]uint64{{0, 0}, {5, 0}, {0, 5}, {30, 0}, {0, 30}} {
		a := &server{id: "id-a", clock: newPeerClock("id-a"), serial: 1000, position: 10 + lead[0], digest: "old configuration", recorded: []record{{1000, 10 + lead[0], start}}}
		b := &server{id: "id-b", clock: newPeerClock("id-b"), serial: 1000, position: 10 + lead[1], digest: "new configuration", recorded: []record{{1000, 10 + lead[1], start}}}
		restamps := 0
		for i := range 300 { // 30 s
			now := start.Add(time.Duration(i) * 100 * time.Millisecond)
			a.position++
			b.position++
			for _, pair := range [][2]*server{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				fresh := false
				for ; to.read < len(from.recorded) && !from.recorded[to.read].at.After(now); to.read++ {
					fresh = true
					r := from.recorded[to.read]
					to.clock.see(peerVersion{zone: "z.", serial: r.serial, digest: from.digest, stateSeq: r.position, server: from.id}, now)
				}
				if !fresh && !to.held {
					continue // the refresher looks at a zone when a record comes or its wait ends
				}
				past, ok, wait := to.clock.restamp("z.", ownVersion{serial: to.serial, position: to.position, since: 10, digest: func() string { return to.digest }}, now)
				to.held = wait > 0
				if ok {
					restamps++
					to.serial = NextSerial(past, now)
					to.recorded = append(to.recorded, record{to.serial, to.position, now.Add(200 * time.Millisecond)})
				}
			}
		}
		if restamps > 1 {
			t.Errorf("lead %v: %d re-stamps in 30 s (a at %d, b at %d), want at most 1", lead, restamps, a.serial, b.serial)
		}
		if a.serial == b.serial {
			t.Errorf("lead %v: both serve other records at serial %d after 30 s", lead, a.serial)
		}
	}
}

// TestAReStampKeepsWhenTheZonesRecordsWereMade: the position a zone's records were made at moves
// with a version of other records, and neither with a re-stamp nor with events that leave the
// zone as it is, which the re-stamp rule compares with the other server's position.
func TestAReStampKeepsWhenTheZonesRecordsWereMade(t *testing.T) {
	cfg := eventstest.Config(t, incrementalConfig)
	p, _, clock := clockedProjector(t, cfg)
	p.peers = newPeerClock("id-a")
	p.project()
	a := cfg.Apps[0]
	fold := func(seq uint64, typ string) {
		t.Helper()
		env, err := events.New(typ, "test", *clock, events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.apply(events.EndpointStateSubject(a.Name, a.Pools[0].Name, a.Pools[0].Endpoints[0].Name), seq, env, nil); err != nil {
			t.Fatal(err)
		}
		p.recompute()
	}
	fold(3, events.TypeEndpointDown)
	if got := p.since["demo.test."]; got != 3 {
		t.Fatalf("records made at %d, want 3 (the endpoint down)", got)
	}
	fold(4, events.TypeEndpointDown) // the same again: no other records
	serial := servedSerial(t, p.current, "demo.test.")
	p.pass(map[string]uint32{"demo.test.": serial}, true)
	zones, _ := p.recompute()
	if servedSerial(t, zones, "demo.test.") == serial {
		t.Fatal("the re-stamp took no new serial")
	}
	if got := p.since["demo.test."]; got != 3 || p.position != 4 {
		t.Fatalf("after the re-stamp: records made at %d, position %d; want 3 and 4", got, p.position)
	}
}

// TestAZoneAReloadAddsPassesTheSerialAnotherServerRecordedBefore: another server serves a zone
// this one does not serve yet (a reload that reached it first, or one this server refused) and
// recorded it an hour ahead of the clock, as a restart past its reservation leaves it; its
// record is the last of its subject, delivered once. When a reload adds the zone here, its first
// serial passes that one, or a secondary listing both holds the other's serial and ignores this
// server's versions until the other records its next.
func TestAZoneAReloadAddsPassesTheSerialAnotherServerRecordedBefore(t *testing.T) {
	js := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	srv, _ := startLogged(t, js, eventstest.Config(t, demoConfig), "", configs)
	ahead := uint32(time.Now().Unix()) + 3600
	for _, apex := range []string{"other.test.", "demo.test."} {
		zc := events.ZoneChanged{Zone: apex, Serial: ahead, Changes: []events.RecordChange{}, Server: "id-other", Digest: "other records"}
		e, err := events.New(events.TypeZoneChanged, "dns-other", time.Now(), zc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), js.JS, events.ZoneSubject(apex, "dns-other"), e); err != nil {
			t.Fatal(err)
		}
	}
	// The records are read in order: once demo.test. passes the second, the first was read.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, func() bool { return serialAfter(serial(t, srv.Addr()), ahead) },
		"demo.test. serves a serial after %d", ahead)
	configs <- eventstest.Config(t, strings.Replace(demoConfig, "zones:\n", "zones:\n  - name: other.test\n", 1))
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = soaOf(t, srv.Addr(), "other.test."); return now != 0 },
		"other.test. served after the reload")
	if !serialAfter(now, ahead) {
		t.Fatalf("other.test., added by a reload, serves %d, not after the %d another server recorded", now, ahead)
	}
}

// TestAStartPassesTheSerialOfAnotherServerWhosePushWasRecordedLast: a zone pushed to a primary
// (RFC 2136) and served to secondaries has another server's push report after each version on
// its subject, the last one that a start reads. The report's serial is a serial that server
// served: a server started then passes it.
func TestAStartPassesTheSerialOfAnotherServerWhosePushWasRecordedLast(t *testing.T) {
	js := eventstest.Start(t)
	ahead := uint32(time.Now().Unix()) + 3600
	publish := func(apex, typ string, payload any) {
		t.Helper()
		e, err := events.New(typ, "dns-other", time.Now(), payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), js.JS, events.ZoneSubject(apex, "dns-other"), e); err != nil {
			t.Fatal(err)
		}
	}
	publish("demo.test.", events.TypeZoneChanged, events.ZoneChanged{Zone: "demo.test.", Serial: ahead, Changes: []events.RecordChange{}, Server: "id-other", Digest: "other records"})
	publish("demo.test.", events.TypeZonePushed, events.ZonePush{Zone: "demo.test.", Server: "192.0.2.1:53", Serial: ahead, Attempt: 1, RRsets: 1})
	// A record the server says it ignores, read after the push.
	publish("other.test.", events.TypeZoneChanged, events.ZoneChanged{Zone: "other.test.", Serial: ahead + 2*maxPeerLead, Changes: []events.RecordChange{}, Server: "id-other", Digest: "d"})
	srv, logs := startLogged(t, js, eventstest.Config(t, demoConfig), "", nil)
	eventstest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "more than a day past the clock") },
		"the server reads the other's records")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = serial(t, srv.Addr()); return serialAfter(now, ahead) },
		"demo.test. serves a serial after the %d another server pushed (it serves %d)", ahead, &now)
}

// TestAPushAtTheSerialOfAVersionLeavesItsDigest: live, another server's push report follows its
// version at the same serial; the version's digest still decides the re-stamp.
func TestAPushAtTheSerialOfAVersionLeavesItsDigest(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newPeerClock("m")
	c.see(peerVersion{zone: "demo.test.", serial: 1000, digest: "theirs", stateSeq: 9, server: "z"}, now)
	c.see(peerVersion{zone: "demo.test.", serial: 1000, server: "dns-z"}, now)
	own := ownVersion{serial: 1000, position: 10, since: 10, digest: func() string { return "mine" }}
	c.restamp("demo.test.", own, now)
	if _, ok, _ := c.restamp("demo.test.", own, now.Add(restampGrace)); !ok {
		t.Fatal("the push hid the older records the version before it recorded at this serial")
	}
}

// TestAServerBehindLooksAgainOnceItHasReadAsFar: two servers on other configurations served
// one serial with other records. The one of the lower id, folded further, leaves the re-stamp to
// the other, whose records it held already at the other's position; the other, behind when the
// record came, must look again once it has read as far rather than wait for a version of its
// own, which other configurations may never make: else the two serve other records at one
// serial for as long as the zone does not change.
func TestAServerBehindLooksAgainOnceItHasReadAsFar(t *testing.T) {
	now := time.Unix(1000, 0)
	ahead, behind := newPeerClock("id-a"), newPeerClock("id-z")
	ahead.see(peerVersion{zone: "z.", serial: 1000, digest: "behind's", stateSeq: 10, server: "id-z"}, now)
	if _, ok, wait := ahead.restamp("z.", ownVersion{serial: 1000, position: 20, since: 5, digest: func() string { return "ahead's" }}, now); ok || wait != 0 {
		t.Fatalf("the server of the lower id: restamp %v, wait %v; want neither", ok, wait)
	}
	behind.see(peerVersion{zone: "z.", serial: 1000, digest: "ahead's", stateSeq: 20, server: "id-a"}, now)
	own := ownVersion{serial: 1000, position: 10, since: 5, digest: func() string { return "behind's" }}
	for at := now; ; at = at.Add(100 * time.Millisecond) {
		if at.Sub(now) > 5*time.Second {
			t.Fatal("no re-stamp within 5 s")
		}
		if at.Sub(now) >= 300*time.Millisecond {
			own.position = 25 // read as far as the other, with the same records
		}
		_, ok, wait := behind.restamp("z.", own, at)
		if ok {
			break
		}
		if wait == 0 {
			t.Fatalf("at +%v, position %d: the zone is not looked at again", at.Sub(now), own.position)
		}
	}
}

// TestAReStampMakesANewVersionOfItsZoneAlone: a re-stamp (or a serial passed after a start's
// read-back) gives its zone a new serial with the same answers, one IXFR step of the SOA alone,
// and leaves every other zone's version as it was, where it projected every app of every zone
// again: 166 ms of the refresher at 10,000 apps, during which no failover was served
// (BenchmarkReStampOf10000Apps: 8.6 µs since).
func TestAReStampMakesANewVersionOfItsZoneAlone(t *testing.T) {
	static, err := zone.Compile(eventstest.Config(t, incrementalConfig))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProjector(static, func() time.Time { return clock })
	before := p.project()
	tab := buildTable(before, nil)
	clock = clock.Add(time.Second)
	p.pass(map[string]uint32{"demo.test.": servedSerial(t, before, "demo.test.")}, true)
	zones, changes := p.finish(p.decide())
	tab = buildTable(zones, tab)
	p.describe(changes)
	if len(changes) != 1 || changes[0].zone.Name != "demo.test." || len(changes[0].changes) != 0 {
		t.Fatalf("changes %+v, want demo.test. alone, with no record changed", changes)
	}
	for i, z := range zones {
		switch {
		case z.Name != "demo.test." && z != before[i]:
			t.Errorf("%s: a new version, want the one before", z.Name)
		case z.Name == "demo.test." && !serialAfter(z.Serial, before[i].Serial):
			t.Errorf("demo.test.: serial %d, want one after %d", z.Serial, before[i].Serial)
		}
	}
	h := tab.history["demo.test."]
	if len(h) == 0 {
		t.Fatal("no IXFR step to the new serial")
	}
	step := h[len(h)-1]
	// The SOAs that frame a step are the IXFR's: the step itself deletes and adds nothing.
	if step.From != servedSerial(t, before, "demo.test.") || step.To != servedSerial(t, zones, "demo.test.") || len(step.Deleted)+len(step.Added) != 0 {
		t.Fatalf("step %d→%d deletes %v, adds %v; want %d→%d and nothing", step.From, step.To, step.Deleted, step.Added,
			servedSerial(t, before, "demo.test."), servedSerial(t, zones, "demo.test."))
	}
}

// TestASecondaryHoldingAnotherServersRecordsAtTheSerialReStampedGetsThisServersRecords: another
// DNS server recorded the zone at this server's very serial, with the records it made from less
// of STATE (the endpoint still up), and a secondary listing both as masters took that server's
// version first. The re-stamp exists for that secondary: once it transfers the new serial from
// this server, it must hold this server's records. It asks for the changes since the serial it
// holds, which this server also served with other records, so the changes from its own version
// there are not the secondary's (before, an IXFR step of the SOA alone: the secondary kept the
// other server's records at the new serial until the zone next changed).
func TestASecondaryHoldingAnotherServersRecordsAtTheSerialReStampedGetsThisServersRecords(t *testing.T) {
	js, addr, behind, held := servedDownBehindAnother(t)
	axfr := func() []dns.RR { return transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0) }
	recordPeerVersion(t, js, "dns-other", "demo.test.", held)
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = serial(t, addr); return serialAfter(now, held) },
		"the server re-stamps the zone past %d (it serves %d)", held, &now)

	secondary := applyIXFR(t, behind, held, transferRRs(t, addr, "demo.test.", dns.TypeIXFR, held))
	if want := zoneLines(axfr()); !slices.Equal(secondary, want) {
		t.Fatalf("the secondary holding the other server's records at %d, after an IXFR to %d:\n%s", held, now, difference(secondary, want))
	}
}

// TestASecondaryHoldingAnotherServersRecordsAtTheSerialServedGetsThisServersRecordsWhenAThirdIsAhead:
// as above, a secondary listing three masters took another server's version at this server's
// very serial, with records from less of STATE; a third server, also behind, recorded the next
// serial. The re-stamp passes the highest serial recorded, the third's, yet the secondary holds
// the served one: an IXFR from there must give it this server's records (before, the re-stamp's
// step, the SOA alone, since only a re-stamp past the very serial served started a new history).
func TestASecondaryHoldingAnotherServersRecordsAtTheSerialServedGetsThisServersRecordsWhenAThirdIsAhead(t *testing.T) {
	js, addr, behind, held := servedDownBehindAnother(t)
	axfr := func() []dns.RR { return transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0) }
	recordPeerVersion(t, js, "dns-other", "demo.test.", held)
	recordPeerVersion(t, js, "dns-third", "demo.test.", held+1)
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = serial(t, addr); return serialAfter(now, held+1) },
		"the server re-stamps the zone past %d (it serves %d)", held+1, &now)

	secondary := applyIXFR(t, behind, held, transferRRs(t, addr, "demo.test.", dns.TypeIXFR, held))
	if want := zoneLines(axfr()); !slices.Equal(secondary, want) {
		t.Fatalf("the secondary holding the other server's records at %d, after an IXFR to %d:\n%s", held, now, difference(secondary, want))
	}
}

// recordPeerVersion records on the DNS stream, as the DNS server writer (its subject's token),
// a version of zone at serial with other records than this server's, made from none of STATE.
func recordPeerVersion(t *testing.T, js *eventstest.Server, writer, zone string, serial uint32) {
	t.Helper()
	recordPeerDigest(t, js, writer, zone, serial, "other records")
}

// recordPeerDigest is recordPeerVersion for a version whose records have digest.
func recordPeerDigest(t *testing.T, js *eventstest.Server, writer, zone string, serial uint32, digest string) {
	t.Helper()
	zc := events.ZoneChanged{Zone: zone, Serial: serial, Changes: []events.RecordChange{}, Server: "id-" + writer, Digest: digest}
	e, err := events.New(events.TypeZoneChanged, writer, time.Now(), zc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js.JS, events.ZoneSubject(zone, writer), e); err != nil {
		t.Fatal(err)
	}
}

// transferRRs returns the records of an AXFR of apex from addr, or of an IXFR from serial.
func transferRRs(t *testing.T, addr, apex string, qtype uint16, serial uint32) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(apex)
	if qtype == dns.TypeIXFR {
		m.SetIxfr(apex, serial, "ns1."+apex, "hostmaster."+apex)
	}
	ch, err := (&dns.Transfer{}).In(m, addr)
	if err != nil {
		t.Fatalf("%s: %v", dns.TypeToString[qtype], err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("%s: %v", dns.TypeToString[qtype], env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs
}

// applyIXFR is the zone a secondary holding the records of zone (an AXFR's) at serial makes of
// the IXFR reply rrs (RFC 1995 §4): the SOA alone leaves it as it is, a reply whose second
// record is no SOA replaces it, and each step deletes and adds records. The zone is returned as
// zoneLines does.
func applyIXFR(t *testing.T, zone []dns.RR, serial uint32, rrs []dns.RR) []string {
	t.Helper()
	if len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("IXFR reply %v does not open with the SOA", rrs)
	}
	final := rrs[0].(*dns.SOA)
	if len(rrs) == 1 {
		return zoneLines(zone)
	}
	if rrs[1].Header().Rrtype != dns.TypeSOA {
		return zoneLines(rrs)
	}
	held := map[string]bool{}
	for _, rr := range zone {
		if rr.Header().Rrtype != dns.TypeSOA {
			held[rr.String()] = true
		}
	}
	i := 1
	for {
		from, ok := rrs[i].(*dns.SOA)
		if !ok || from.Serial != serial {
			t.Fatalf("IXFR step %d starts at %v, want the serial held, %d", i, rrs[i], serial)
		}
		if i++; i == len(rrs) {
			t.Fatalf("IXFR ends after the step's first SOA")
		}
		for ; rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			delete(held, rrs[i].String())
		}
		serial = rrs[i].(*dns.SOA).Serial
		for i++; i < len(rrs) && rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			held[rrs[i].String()] = true
		}
		if i == len(rrs)-1 && serial == final.Serial {
			break
		}
		if i >= len(rrs)-1 {
			t.Fatalf("IXFR ends at serial %d, not at its first SOA's %d", serial, final.Serial)
		}
	}
	out := []dns.RR{final}
	for s := range held {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return zoneLines(out)
}

// zoneLines is a zone's records in presentation form, sorted, the SOA (the first, or the one
// closing a transfer) once.
func zoneLines(rrs []dns.RR) []string {
	var out []string
	for i, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeSOA && i > 0 {
			continue
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// servedDownBehindAnother starts a server that transfers demo.test. to loopback, takes the zone
// as another server made from less of STATE would hold it (behind: the records before the
// endpoint went down), then has the endpoint go down and returns the serial served with it.
func servedDownBehindAnother(t *testing.T) (js *eventstest.Server, addr string, behind []dns.RR, held uint32) {
	t.Helper()
	js = eventstest.Start(t)
	conf := strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	addr = startServer(t, js, eventstest.Config(t, conf), "").srv.Addr()
	behind = transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)
	first := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { held = serial(t, addr); return held != first }, "the server serves the endpoint down")
	return js, addr, behind, held
}

// TestASecondaryHoldingAnotherServersRecordsAtAnEarlierSerialGetsThisServersRecords: another DNS
// server recorded the zone, with the records it made from less of STATE (the endpoint still
// up), at a serial this server also served, with the endpoint down; this server has served a
// later version since (the backup pool's endpoint down too), so no re-stamp is asked for. A
// secondary listing both as masters took the other's version, and asks this server for the
// changes since that serial: this server's changes from its own version there are no changes
// from the secondary's records, so it must get the whole zone (before, it got the step to the
// later version alone, and kept the endpoint up, a failover it never applied). A secondary that
// took the first serial, which only this server recorded, still gets the changes alone.
func TestASecondaryHoldingAnotherServersRecordsAtAnEarlierSerialGetsThisServersRecords(t *testing.T) {
	js, addr, behind, held := servedDownBehindAnother(t)
	first := behind[0].(*dns.SOA).Serial
	endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081")
	var now uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { now = serial(t, addr); return serialAfter(now, held) },
		"the server serves the backup's endpoint down past %d (it serves %d)", held, &now)
	recordPeerVersion(t, js, "dns-other", "demo.test.", held)
	want := zoneLines(transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0))

	var secondary []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		secondary = applyIXFR(t, behind, held, transferRRs(t, addr, "demo.test.", dns.TypeIXFR, held))
		if slices.Equal(secondary, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the secondary holding the other server's records at %d, after an IXFR to %d:\n%s", held, now, difference(secondary, want))
		}
	}
	rrs := transferRRs(t, addr, "demo.test.", dns.TypeIXFR, first)
	if len(rrs) < 2 || rrs[1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("IXFR from serial %d, which only this server recorded, answered the whole zone at %d", first, now)
	}
	if got := applyIXFR(t, behind, first, rrs); !slices.Equal(got, want) {
		t.Fatalf("the secondary holding this server's records at %d, after an IXFR to %d:\n%s", first, now, difference(got, want))
	}
}

// TestAnIXFRGivenTheWholeZoneForAnotherServersRecordsNamesThatServerInTheLog: a DNS server's
// credentials record a version at a serial of this server's history with other records (a
// server on another configuration, or a forger making every secondary take the whole zone). A
// secondary asking for the changes from that serial gets the whole zone, and the log line of
// the transfer names the writer (its NATS user) and the serial, so that an operator seeing
// every IXFR answered whole can tell why and whose credentials to look at.
func TestAnIXFRGivenTheWholeZoneForAnotherServersRecordsNamesThatServerInTheLog(t *testing.T) {
	js := eventstest.Start(t)
	conf := strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	srv, logs := startLogged(t, js, eventstest.Config(t, conf), "", nil)
	addr := srv.Addr()
	first := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, addr) != first }, "the server serves the endpoint down")
	recordPeerVersion(t, js, "dns-forger", "demo.test.", first)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		rrs := transferRRs(t, addr, "demo.test.", dns.TypeIXFR, first)
		return len(rrs) > 1 && rrs[1].Header().Rrtype != dns.TypeSOA
	}, "an IXFR from %d, which dns-forger recorded with other records, gets the whole zone", first)
	// The line is written once the answer is sent, so after the client may have read it.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"message":"zone transferred"`) && strings.Contains(line, `"type":"IXFR","incremental":false`) &&
				strings.Contains(line, `"recorded_by":"dns-forger"`) && strings.Contains(line, fmt.Sprintf(`"client_serial":%d`, first)) {
				return true
			}
		}
		return false
	}, "a log line of an IXFR answered whole naming dns-forger and serial %d:\n%s", first, logs)
}

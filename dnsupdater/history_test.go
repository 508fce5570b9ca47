package dnsupdater

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestIXFRAnswersTheRealDifferencesAcrossARestart(t *testing.T) {
	js := eventstest.Start(t)
	dir := t.TempDir()
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	h := startServer(t, js, conf, dir)
	addr := h.srv.Addr()
	s0 := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != s0 }, "serial moves")
	s1 := serial(t, addr)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != s1 }, "serial moves again")
	s2 := serial(t, addr)
	st := js.Stream(t, events.StreamDNS)
	eventstest.Eventually(t, 2*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), st, events.ZoneSubject("demo.test.", "dns-test"))
		var zc events.ZoneChanged
		return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == s2
	}, "the change to serial %d recorded on the DNS stream", s2)
	h.stop()

	h = startServer(t, js, conf, dir)
	addr = h.srv.Addr()
	if s := serial(t, addr); s != s2 {
		t.Fatalf("after the restart: want serial %d kept, got %d", s2, s)
	}
	soa := func(s uint32) string { return fmt.Sprintf("demo.test. SOA %d", s) }
	want := []string{soa(s2), soa(s0), "shop.demo.test. A 127.0.0.11", soa(s1), "shop.demo.test. A 127.0.0.12",
		soa(s1), "shop.demo.test. A 127.0.0.12", soa(s2), "shop.demo.test. A 127.0.0.11", soa(s2)}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool { got = ixfrFrom(t, addr, s0); return slices.Equal(got, want) },
		"IXFR from serial %d, before the restart, answers both steps", s0)

	// The history goes on from the restored one: a change after the restart joins it.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != s2 }, "serial moves after the restart")
	s3 := serial(t, addr)
	got = ixfrFrom(t, addr, s1)
	want = []string{soa(s3), soa(s1), "shop.demo.test. A 127.0.0.12", soa(s2), "shop.demo.test. A 127.0.0.11",
		soa(s2), "shop.demo.test. A 127.0.0.11", soa(s3), "shop.demo.test. A 127.0.0.12", soa(s3)}
	if !slices.Equal(got, want) {
		t.Errorf("IXFR from %d across the restart and a later change:\nwant %q\ngot  %q", s1, want, got)
	}
}

// TestARestartOnAnOlderDataDirKeepsIXFRFromTheSerialsItsSnapshotServed: a single server
// restarted on an older copy of its data dir (a restored backup, a disk swapped back) passes the
// serial the stream records it served last, as it must; its history up to the snapshot's serial
// is its own, so a secondary holding an earlier serial of it still gets the changes, not the
// whole zone: only a re-stamp past another server's serial starts a new IXFR history.
func TestARestartOnAnOlderDataDirKeepsIXFRFromTheSerialsItsSnapshotServed(t *testing.T) {
	js := eventstest.Start(t)
	dir, older := t.TempDir(), t.TempDir()
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	h := startServer(t, js, conf, dir)
	addr := h.srv.Addr()
	// s0 is a serial a change made after the server read STATE to its end: the version it
	// serves first at a start is not a step of its history, so the secondary's serial is taken
	// once the down is served.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return !slices.Contains(addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)), "127.0.0.11")
	}, "the down served")
	s0 := serial(t, addr)
	behind := transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, addr) != s0 }, "serial moves")
	last := serial(t, addr)
	eventstest.Eventually(t, 5*time.Second, func() bool { return recordedLast(t, js, last) }, "the change to serial %d recorded on the DNS stream", last)
	h.stop()
	copyDir(t, dir, older)

	// The server goes on from the newer dir, back to the older copy's records at later serials.
	h = startServer(t, js, conf, dir)
	addr = h.srv.Addr()
	last = serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, addr) != last }, "serial moves again")
	last = serial(t, addr)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, addr) != last }, "serial moves back")
	last = serial(t, addr)
	eventstest.Eventually(t, 5*time.Second, func() bool { return recordedLast(t, js, last) }, "the change to serial %d recorded on the DNS stream", last)
	h.stop()

	addr = startServer(t, js, conf, older).srv.Addr()
	var now uint32
	eventstest.Eventually(t, 10*time.Second, func() bool { now = serial(t, addr); return serialAfter(now, last) },
		"the server on the older dir passes serial %d, the last served (it serves %d)", last, &now)
	rrs := transferRRs(t, addr, "demo.test.", dns.TypeIXFR, s0)
	if len(rrs) < 2 || rrs[1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("IXFR from serial %d, which the older dir's history reaches, answered the whole zone at %d", s0, now)
	}
	if got, want := applyIXFR(t, behind, s0, rrs), zoneLines(transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)); !slices.Equal(got, want) {
		t.Fatalf("a secondary at %d after an IXFR to %d:\n%s", s0, now, difference(got, want))
	}
}

// recordedLast reports whether the DNS stream's last record of demo.test. by dns-test is of serial.
func recordedLast(t *testing.T, js *eventstest.Server, serial uint32) bool {
	e, _, ok, err := events.Last(context.Background(), js.Stream(t, events.StreamDNS), events.ZoneSubject("demo.test.", "dns-test"))
	var zc events.ZoneChanged
	return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == serial
}

func TestAForgedStepOnTheDNSStreamIsRefused(t *testing.T) {
	tests := []struct {
		name string
		step events.ZoneStep
		ok   bool
	}{
		{name: "an app's A record", step: events.ZoneStep{From: 1, Added: []string{"shop.demo.test.\t5\tIN\tA\t192.0.2.1"}}, ok: true},
		{name: "a record outside the zone", step: events.ZoneStep{From: 1, Added: []string{"shop.other.test.\t5\tIN\tA\t192.0.2.1"}}},
		{name: "a type no app answers with", step: events.ZoneStep{From: 1, Deleted: []string{"demo.test.\t5\tIN\tNS\tns.evil.test."}}},
		{name: "no record at all", step: events.ZoneStep{From: 1, Added: []string{"garbage"}}},
		{name: "another class", step: events.ZoneStep{From: 1, Added: []string{"shop.demo.test.\t5\tCH\tA\t192.0.2.1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := deltaOf("demo.test.", events.ZoneChanged{Zone: "demo.test.", Serial: 2, Step: &tt.step})
			if (err == nil) != tt.ok {
				t.Errorf("want accepted %v, got error %v", tt.ok, err)
			}
			if err != nil && !strings.Contains(err.Error(), "step.") {
				t.Errorf("want the error to name the field, got %v", err)
			}
		})
	}
}

// FuzzStoredStep feeds arbitrary stored messages to the history reader: none may panic, and a
// step it accepts holds only app records of the zone.
func FuzzStoredStep(f *testing.F) {
	ok := events.ZoneChanged{Zone: "demo.test.", Serial: 2, Step: &events.ZoneStep{From: 1,
		Deleted: []string{"shop.demo.test.\t5\tIN\tA\t127.0.0.11"}, Added: []string{"shop.demo.test.\t5\tIN\tA\t127.0.0.12"}}}
	env, err := events.New(events.TypeZoneChanged, "fuzz", time.Unix(0, 0), ok)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env.Encode())
	f.Add([]byte(`{"type":"detour.dns.zone_changed.v1","data":{"zone":"demo.test.","serial":3,"step":{"from":2,"added":["x.other. 5 IN A 1.2.3.4"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := storedStep("demo.test.", writer{name: "fuzz"}, data)
		if !s.ok {
			return
		}
		for _, rr := range append(slices.Clone(s.d.Deleted), s.d.Added...) {
			if h := rr.Header(); !dns.IsSubDomain("demo.test.", h.Name) || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA && h.Rrtype != dns.TypeCNAME) {
				t.Fatalf("accepted %v", rr)
			}
		}
	})
}

// TestEveryTableKeepsItsOwnIXFRHistory builds more versions than the history holds, each table
// from the one before (whose history the next extends in place), and a second table from one
// of them: every table still gives the steps up to its own serial, and each step is the
// difference of the whole zones.
func TestEveryTableKeepsItsOwnIXFRHistory(t *testing.T) {
	static, err := zone.Compile(eventstest.Config(t, `
zones: [{name: region.test}]
apps:
  - {name: a, fqdn: a.region.test, pools: [{name: main, endpoints: [{name: e, address: "10.1.0.1:80"}]}, {name: backup, endpoints: [{name: e, address: "10.2.0.1:80"}]}]}
  - {name: b, fqdn: b.region.test, pools: [{name: main, endpoints: [{name: e, address: "10.1.0.2:80"}]}, {name: backup, endpoints: [{name: e, address: "10.2.0.2:80"}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	// main and other see the same events, other one more at the branch: its version there
	// is another one from the same table.
	main, other := newProjector(static, now), newProjector(static, now)
	seq := uint64(0)
	flip := func(p *projector, app string, down bool) {
		seq++
		env, err := events.New(map[bool]string{false: events.TypeEndpointUp, true: events.TypeEndpointDown}[down], "test", clock, events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.apply(events.EndpointStateSubject(app, "main", "e"), seq, env, nil); err != nil {
			t.Fatal(err)
		}
	}
	type kept struct {
		tab   *table
		steps []string
	}
	stepsOf := func(tab *table) []string {
		var out []string
		for _, d := range tab.history["region.test."] {
			out = append(out, fmt.Sprintf("%d->%d\n%s", d.From, d.To, stepLines(d)))
		}
		return out
	}
	tab := buildTable(main.project(), nil)
	other.project()
	var tables []kept
	const versions, branch = 2*maxDeltas + 5, maxDeltas + 3
	for v := range versions {
		flip(main, "a", v%2 == 0)
		flip(other, "a", v%2 == 0)
		before := tab
		zones, _ := main.recompute()
		tab = buildTable(zones, before)
		if got, want := stepLines(tab.history["region.test."][len(tab.history["region.test."])-1]), wholeDifference(before.zones[0], zones[0]); got != want {
			t.Fatalf("version %d: the last step is\n%s\nthe whole zones differ by\n%s", v, got, want)
		}
		if v == branch {
			flip(other, "b", true)
			alt := buildTable(other.project(), before)
			h := alt.history["region.test."]
			if got, want := stepLines(h[len(h)-1]), wholeDifference(before.zones[0], alt.zones[0]); got != want {
				t.Fatalf("the second table from version %d: its last step is\n%s\nthe whole zones differ by\n%s", v, got, want)
			}
			if got, want := h[:len(h)-1], before.history["region.test."]; len(got) != min(len(want), maxDeltas-1) || got[len(got)-1].To != before.zones[0].Serial {
				t.Fatalf("the second table from version %d holds %d earlier steps to serial %d, want %d to %d", v, len(got), got[len(got)-1].To, min(len(want), maxDeltas-1), before.zones[0].Serial)
			}
			flip(other, "b", false)
			other.recompute()
		}
		tables = append(tables, kept{tab, stepsOf(tab)})
	}
	for v, k := range tables {
		if got := stepsOf(k.tab); !slices.Equal(got, k.steps) {
			t.Fatalf("version %d's history changed after later versions were built:\n%s", v, difference(got, k.steps))
		}
		h := k.tab.history["region.test."]
		if want := min(v+1, maxDeltas); len(h) != want {
			t.Fatalf("version %d: %d steps of history, want %d", v, len(h), want)
		}
		for i := 1; i < len(h); i++ {
			if h[i].From != h[i-1].To {
				t.Fatalf("version %d: step %d starts at serial %d, the one before ends at %d", v, i, h[i].From, h[i-1].To)
			}
		}
		if last := h[len(h)-1].To; last != k.tab.zones[0].Serial {
			t.Fatalf("version %d: the history ends at serial %d, the zone is at %d", v, last, k.tab.zones[0].Serial)
		}
	}
}

// TestATableThatKeptItsPredecessorsHistoryDoesNotExtendItUnderAnotherTable: a second table built
// from one whose history a first extended in place, with no change to the zone, holds that very
// history; a table built from the second must not append in the room the first's step took.
func TestATableThatKeptItsPredecessorsHistoryDoesNotExtendItUnderAnotherTable(t *testing.T) {
	static, err := zone.Compile(eventstest.Config(t, `
zones: [{name: region.test}]
apps:
  - {name: a, fqdn: a.region.test, pools: [{name: main, endpoints: [{name: e, address: "10.1.0.1:80"}]}, {name: backup, endpoints: [{name: e, address: "10.2.0.1:80"}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProjector(static, func() time.Time { return clock })
	seq := uint64(0)
	flip := func(down bool) []*zone.Zone {
		seq++
		env, err := events.New(map[bool]string{false: events.TypeEndpointUp, true: events.TypeEndpointDown}[down], "test", clock, events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.apply(events.EndpointStateSubject("a", "main", "e"), seq, env, nil); err != nil {
			t.Fatal(err)
		}
		zones, _ := p.recompute()
		return zones
	}
	stepsOf := func(tab *table) []string {
		var out []string
		for _, d := range tab.history["region.test."] {
			out = append(out, fmt.Sprintf("%d->%d\n%s", d.From, d.To, stepLines(d)))
		}
		return out
	}
	prev := buildTable(p.project(), nil)
	prev = buildTable(flip(true), prev) // a history of one step, with room after it
	first := buildTable(flip(false), prev)
	want := stepsOf(first)
	second := buildTable(prev.zones, prev) // the same zones: it keeps prev's history
	third := buildTable(flip(true), second)
	if got := stepsOf(first); !slices.Equal(got, want) {
		t.Fatalf("the first table's history changed when a table was built from the second:\n%s", difference(got, want))
	}
	if h := third.history["region.test."]; len(h) != 2 || h[0].To != h[1].From || h[1].To != third.zones[0].Serial {
		t.Fatalf("the third table's history is %v", stepsOf(third))
	}
}

// TestEveryVersionOfAZoneIsRecordedHoweverCloseTheReloads reloads the configuration three times
// within JetStream's duplicate window, each time changing a static record, twice with
// configurations no event carried: each reload's version must be recorded on the DNS stream (as
// `detour events` and a replay read it), caused by the configuration applied when one is named.
func TestEveryVersionOfAZoneIsRecordedHoweverCloseTheReloads(t *testing.T) {
	js := eventstest.Start(t)
	doc := func(addr string) string {
		return strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    records: [\"static 300 IN A "+addr+"\"]\n", 1)
	}
	srv, configs := startReloadable(t, js, eventstest.Config(t, doc("192.0.2.1")))
	addr := srv.Addr()
	s0 := serial(t, addr) // the start's version, recorded too: another server's versions pass it
	type version struct {
		serial uint32
		cause  string
	}
	var reloads []version
	for i, cause := range []string{"", "", "config-event-3"} {
		c := eventstest.Config(t, doc(fmt.Sprintf("192.0.2.%d", i+2)))
		c.Event = cause
		configs <- c
		prev := s0
		if i > 0 {
			prev = reloads[i-1].serial
		}
		eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != prev }, "reload %d served", i+1)
		reloads = append(reloads, version{serial(t, addr), c.Event})
	}
	var got map[uint32][]events.Envelope
	eventstest.Eventually(t, 2*time.Second, func() bool { got = recordedSerials(t, js); return len(got) == len(reloads)+1 },
		"a ZoneChanged event for the start's version %d and each reload's version %+v", s0, reloads)
	for _, v := range append([]version{{serial: s0}}, reloads...) {
		if e := got[v.serial]; len(e) != 1 || e[0].Cause != v.cause {
			t.Errorf("serial %d: want recorded once with cause %q, got %+v (serials recorded: %v)", v.serial, v.cause, e, slices.Collect(maps.Keys(got)))
		}
	}
}

// recordedSerials returns, per serial, the ZoneChanged events of demo.test. the DNS stream holds.
func recordedSerials(t *testing.T, js *eventstest.Server) map[uint32][]events.Envelope {
	t.Helper()
	st := js.Stream(t, events.StreamDNS)
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32][]events.Envelope{}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil || !strings.HasPrefix(m.Subject, "detour.dns.demo_test.") {
			continue
		}
		e, err := events.Decode(m.Data)
		var zc events.ZoneChanged
		if err == nil && e.Type == events.TypeZoneChanged && e.Payload(&zc) == nil {
			out[zc.Serial] = append(out[zc.Serial], e)
		}
	}
	return out
}

// reserveSerial writes dir's serials file as a server that reserved serial s for demo.test.
// before it crashed would have.
func reserveSerial(t *testing.T, dir string, s uint32) {
	t.Helper()
	if err := (&serialReserver{dir: dir}).write(map[string]uint32{"demo.test.": s}); err != nil {
		t.Fatal(err)
	}
}

// followBound is how long the history tests below wait for a server to serve a STATE event or
// record its version: an upper bound, not a pace. Under load a follower misses JetStream's
// heartbeats (two of events.FollowHeartbeat, 500 ms), waits a retry (500 ms) and creates its
// consumer again, so one event can take seconds to serve: beside four busy loops on two cores,
// a run of TestIXFRAfterARestartStepsOnlyThroughTheServersOwnVersions that logged "no heartbeat
// received" took 5.4 s where 46 others took under a second each, and one run beside that log
// line failed when each step had 2 s.
const followBound = 10 * time.Second

// TestIXFRAfterARestartStepsOnlyThroughTheServersOwnVersions runs two DNS servers on one STATE
// and one DNS stream whose serials coincide (A's reservation after a crash is two ahead of B's,
// and A's versions reach the stream only after B made its own) while their content differs: A, restarted from its snapshot, must answer IXFR with its own
// step, not with B's step to the same serial, which would leave a secondary with the address A
// no longer serves; whether the two servers' names differ or not (a name is the host's, cut at
// its first dot: ns1.eu.example.com and ns1.us.example.com are both ns1). B's first version
// holds A's records at A's first serial, from which the IXFR starts: had B recorded other
// records there, the secondary asking might hold them, and would get the whole zone
// (TestARestartKnowsWhichSerialsOfItsHistoryAnotherServerRecordedWithOtherRecords).
func TestIXFRAfterARestartStepsOnlyThroughTheServersOwnVersions(t *testing.T) {
	for _, names := range [][2]string{{"dns-a", "dns-b"}, {"ns1", "ns1"}} {
		t.Run(names[0]+" and "+names[1], func(t *testing.T) { ixfrThroughOwnVersions(t, names[0], names[1]) })
	}
}

func ixfrThroughOwnVersions(t *testing.T, nameA, nameB string) {
	js := eventstest.Start(t)
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	r := uint32(time.Now().Unix()) + 100000
	dirA, dirB := t.TempDir(), t.TempDir()
	reserveSerial(t, dirA, r)
	reserveSerial(t, dirB, r-2)
	at := func(h *harness, s uint32) func() bool { return func() bool { return serial(t, h.srv.Addr()) == s } }
	recorded := func(s uint32, n int) func() bool { return func() bool { return len(recordedSerials(t, js)[s]) == n } }

	a := startNamed(t, js, conf, dirA, nameA)
	eventstest.Eventually(t, followBound, at(a, r+1), "A starts at serial %d", r+1)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, at(a, r+2), "A's version %d: shop at .12", r+2)
	eventstest.Eventually(t, followBound, recorded(r+2, 1), "A's version %d recorded", r+2)
	a.stop()
	// A's versions reach the stream only after B made its own: B never sees A's serials, as
	// one partitioned from the stream while the other records would not, and steps to them
	// with other records. (Both serials are past the clock, and a server counts another's up
	// to a day past the serial it started at: on the stream, A's would carry B past them.)
	late := takeOffStream(t, js, events.ZoneSubject("demo.test.", a.srv.writer))

	b := startNamed(t, js, conf, dirB, nameB)
	eventstest.Eventually(t, followBound, at(b, r), "B starts at serial %d", r)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, at(b, r+1), "B's version %d: shop at .11", r+1)
	endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, followBound, at(b, r+2), "B's version %d: both pools down", r+2)
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, followBound, at(b, r+3), "B's version %d: shop at .12", r+3)
	eventstest.Eventually(t, followBound, recorded(r+3, 1), "B's version %d recorded", r+3)
	putBackOnStream(t, js, late)
	if n := len(recordedSerials(t, js)[r+2]); n != 2 {
		t.Errorf("serial %d: want both servers' versions recorded, got %d", r+2, n)
	}

	a = startNamed(t, js, conf, dirA, nameA)
	addr := a.srv.Addr()
	if s := serial(t, addr); s != r+2 {
		t.Fatalf("A restarted at serial %d, want %d", s, r+2)
	}
	soa := func(s uint32) string { return fmt.Sprintf("demo.test. SOA %d", s) }
	want := []string{soa(r + 2), soa(r + 1), "shop.demo.test. A 127.0.0.11", soa(r + 2), "shop.demo.test. A 127.0.0.12", soa(r + 2)}
	var got []string
	eventstest.Eventually(t, followBound, func() bool { got = ixfrFrom(t, addr, r+1); return len(got) > 1 && strings.Contains(got[1], "SOA") },
		"an incremental answer from A's serial %d", r+1)
	if !slices.Equal(got, want) {
		t.Errorf("IXFR from A's serial %d (shop at .11 there, .12 now):\nwant %q\ngot  %q", r+1, want, got)
	}
}

// takeOffStream deletes the DNS stream's messages on subject and returns them, for
// putBackOnStream: what a server recorded reaches the stream late, as a recorder cut from it
// pushes once it is back.
func takeOffStream(t *testing.T, js *eventstest.Server, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	st := js.Stream(t, events.StreamDNS)
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil || m.Subject != subject {
			continue
		}
		if err := st.DeleteMsg(context.Background(), seq); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("nothing on %s", subject)
	}
	return out
}

// putBackOnStream publishes msgs again, in order, without the headers JetStream acts on: their
// Nats-Msg-Id, which the stream still holds within its duplicate window and would drop them
// for, and the expected last sequence, which their deletion moved.
func putBackOnStream(t *testing.T, js *eventstest.Server, msgs []*jetstream.RawStreamMsg) {
	t.Helper()
	for _, m := range msgs {
		h := nats.Header{}
		for k, v := range m.Header {
			if !strings.HasPrefix(k, "Nats-") {
				h[k] = v
			}
		}
		if _, err := js.JS.PublishMsg(context.Background(), &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnotherServersVersionsDoNotCutTheHistoryShort has a second DNS server, started without a
// data dir, record its first version (caused by the same STATE event as A's last, at a serial
// of its own) after A's: A, restarted from its snapshot, must still answer IXFR with its steps.
func TestAnotherServersVersionsDoNotCutTheHistoryShort(t *testing.T) {
	js := eventstest.Start(t)
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	r := uint32(time.Now().Unix()) + 100000
	dirA := t.TempDir()
	reserveSerial(t, dirA, r)
	a := startNamed(t, js, conf, dirA, "dns-a")
	addr := a.srv.Addr()
	for i, move := range []func(testing.TB, *eventstest.Server, string, string, string) events.Envelope{endpointDown, endpointUp, endpointDown} {
		move(t, js, "shop", "us-west", "127-0-0-11_8081")
		s := r + 2 + uint32(i)
		eventstest.Eventually(t, followBound, func() bool { return serial(t, addr) == s }, "A at serial %d", s)
	}
	eventstest.Eventually(t, followBound, func() bool { return len(recordedSerials(t, js)[r+4]) == 1 }, "A's version %d recorded", r+4)

	b := startNamed(t, js, conf, "", "dns-b")
	var sb uint32
	eventstest.Eventually(t, followBound, func() bool { sb = serial(t, b.srv.Addr()); return len(recordedSerials(t, js)[sb]) == 1 },
		"B's first version recorded")
	a.stop()

	a = startNamed(t, js, conf, dirA, "dns-a")
	addr = a.srv.Addr()
	if s := serial(t, addr); s != r+4 {
		t.Fatalf("A restarted at serial %d, want %d", s, r+4)
	}
	soa := func(s uint32) string { return fmt.Sprintf("demo.test. SOA %d", s) }
	want := []string{soa(r + 4), soa(r + 2), "shop.demo.test. A 127.0.0.12", soa(r + 3), "shop.demo.test. A 127.0.0.11",
		soa(r + 3), "shop.demo.test. A 127.0.0.11", soa(r + 4), "shop.demo.test. A 127.0.0.12", soa(r + 4)}
	eventstest.Eventually(t, followBound, func() bool { return slices.Equal(ixfrFrom(t, addr, r+2), want) },
		"after A's restart, IXFR from %d answers A's two steps (B's first version is %d)", r+2, sb)
}

// TestARestartKnowsWhichSerialsOfItsHistoryAnotherServerRecordedWithOtherRecords: another DNS
// server recorded the zone at a serial of this server's history with other records (the
// endpoint still up), then at this server's serial with its records. After a restart, which
// reads the history back from the stream and of the other server's versions sees only the last
// at first, a secondary that took the other's first version gets the whole zone from this
// server, not the changes from this server's version there; one that took the serial both
// recorded alike, or one that only this server recorded, gets the changes alone.
func TestARestartKnowsWhichSerialsOfItsHistoryAnotherServerRecordedWithOtherRecords(t *testing.T) {
	js := eventstest.Start(t)
	dir := t.TempDir()
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	h := startServer(t, js, conf, dir)
	addr := h.srv.Addr()
	axfr := func() []dns.RR { return transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0) }
	behind := axfr()
	first := serial(t, addr)
	// moves has a transition published and waits for the server to serve it past the serial
	// it served; it returns the zone as served then.
	moves := func(publish func(), what string) []dns.RR {
		before := serial(t, addr)
		publish()
		var now uint32
		eventstest.Eventually(t, 5*time.Second, func() bool { now = serial(t, addr); return serialAfter(now, before) },
			"the server serves %s past %d (it serves %d)", what, before, &now)
		return axfr()
	}
	down := moves(func() { endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081") }, "the endpoint down")
	held := down[0].(*dns.SOA).Serial
	both := moves(func() { endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081") }, "the backup's endpoint down")
	agreed := both[0].(*dns.SOA).Serial
	st := js.Stream(t, events.StreamDNS)
	var zc events.ZoneChanged
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), st, events.ZoneSubject("demo.test.", "dns-test"))
		return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == agreed
	}, "the version at serial %d recorded on the DNS stream", agreed)
	recordPeerVersion(t, js, "dns-other", "demo.test.", held)
	recordPeerDigest(t, js, "dns-other", "demo.test.", agreed, zc.Digest)
	h.stop()

	h = startServer(t, js, conf, dir)
	addr = h.srv.Addr()
	if got := serial(t, addr); got != agreed {
		t.Fatalf("the restarted server serves serial %d, want %d, the one it served", got, agreed)
	}
	now := moves(func() { endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081") }, "the backup's endpoint up")
	want := zoneLines(now)
	tests := []struct {
		name        string
		held        []dns.RR
		incremental bool
	}{
		{name: "the other server's records at a serial this server recorded with others", held: behind, incremental: false},
		{name: "the records both servers recorded at one serial", held: both, incremental: true},
		{name: "the records of a serial only this server recorded", held: behind, incremental: true},
	}
	tests[0].held = slices.Clone(behind)
	tests[0].held[0] = down[0] // the other server's records, at the serial it recorded them
	tests[2].held[0].(*dns.SOA).Serial = first
	for _, tt := range tests {
		from := tt.held[0].(*dns.SOA).Serial
		var rrs []dns.RR
		var got []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			rrs = transferRRs(t, addr, "demo.test.", dns.TypeIXFR, from)
			got = applyIXFR(t, tt.held, from, rrs)
			if incremental := len(rrs) > 1 && rrs[1].Header().Rrtype == dns.TypeSOA; slices.Equal(got, want) && incremental == tt.incremental || time.Now().After(deadline) {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("a secondary holding %s (%d), after an IXFR to %d:\n%s", tt.name, from, now[0].(*dns.SOA).Serial, difference(got, want))
		}
		if incremental := len(rrs) > 1 && rrs[1].Header().Rrtype == dns.TypeSOA; incremental != tt.incremental {
			t.Errorf("a secondary holding %s (%d): incremental transfer %v, want %v", tt.name, from, incremental, tt.incremental)
		}
	}
}

// TestARestartAfterAnotherServerRecordedMoreThanItReadsStepsFromNoSerialBefore: another DNS
// server recorded the zone at a serial of this server's history with other records (the
// endpoint still up), then at this server's next serial with its records, then more failed
// pushes of it to its primary than a start reads of its subject (maxHistoryReads). After a
// restart, which does not read back to the first serial, a secondary that took the other's
// version there gets this server's records: the server cannot tell which serials the other
// recorded before the messages it read, and keeps no history from before the restart
// (before, the secondary got the changes from this server's version there, and kept the
// endpoint up).
func TestARestartAfterAnotherServerRecordedMoreThanItReadsStepsFromNoSerialBefore(t *testing.T) {
	const notKept = "ixfr history not kept: another dns server recorded more of this zone since its oldest serial than a start reads, which serials of it with which records is not known; secondaries behind get the whole zone once"
	js := eventstest.Start(t)
	dir := t.TempDir()
	conf := eventstest.Config(t, strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1))
	h := startServer(t, js, conf, dir)
	addr := h.srv.Addr()
	behind := transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)
	first := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	var held, agreed uint32
	eventstest.Eventually(t, 5*time.Second, func() bool { held = serial(t, addr); return held != first }, "the server serves the endpoint down")
	endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { agreed = serial(t, addr); return agreed != held }, "the server serves the backup's endpoint down")
	var zc events.ZoneChanged
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), js.Stream(t, events.StreamDNS), events.ZoneSubject("demo.test.", "dns-test"))
		return err == nil && ok && e.Payload(&zc) == nil && zc.Serial == agreed
	}, "the version at serial %d recorded", agreed)
	recordPeerVersion(t, js, "dns-other", "demo.test.", held)
	recordPeerDigest(t, js, "dns-other", "demo.test.", agreed, zc.Digest)
	for attempt := range 2 * maxHistoryReads {
		e, err := events.New(events.TypeZonePushFailed, "dns-other", time.Now(), events.ZonePush{Zone: "demo.test.", Server: "192.0.2.53:53", Serial: agreed, Attempt: attempt + 1, Error: "i/o timeout"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), js.JS, events.ZoneSubject("demo.test.", "dns-other"), e); err != nil {
			t.Fatal(err)
		}
	}
	h.stop()

	srv, logs := startLogged(t, js, conf, dir, nil)
	addr = srv.Addr()
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("ixfr history read from the stream")+logs.Count(notKept) > 0 },
		"the restarted server reads its history back")
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serialAfter(serial(t, addr), agreed) },
		"the restarted server serves the backup's endpoint up past %d", agreed)
	now := transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)
	taken := slices.Clone(behind)
	taken[0] = dns.Copy(behind[0])
	taken[0].(*dns.SOA).Serial = held // the other server's records, at the serial it recorded them
	if got, want := applyIXFR(t, taken, held, transferRRs(t, addr, "demo.test.", dns.TypeIXFR, held)), zoneLines(now); !slices.Equal(got, want) {
		t.Fatalf("a secondary holding the other server's records at %d, after an IXFR to %d:\n%s", held, now[0].(*dns.SOA).Serial, difference(got, want))
	}
}

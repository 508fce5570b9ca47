package dnsupdater

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// regionChange is the change of a zone where n apps moved at once, with its IXFR step.
func regionChange(n int) (events.ZoneChanged, []events.RecordChange) {
	zc := events.ZoneChanged{Zone: "demo.test.", Serial: 7, Step: &events.ZoneStep{From: 6}}
	for i := range n {
		name := fmt.Sprintf("app%d.demo.test.", i)
		before, after := fmt.Sprintf("127.1.%d.%d", i/254, 1+i%254), fmt.Sprintf("127.2.%d.%d", i/254, 1+i%254)
		zc.Changes = append(zc.Changes, events.RecordChange{Name: name, Type: "A", Before: []string{before}, After: []string{after}})
		zc.Step.Deleted = append(zc.Step.Deleted, name+" 30 IN A "+before)
		zc.Step.Added = append(zc.Step.Added, name+" 30 IN A "+after)
	}
	return zc, zc.Changes
}

func TestAZoneChangeThatFitsOneMessageIsToldWhole(t *testing.T) {
	zc, _ := regionChange(100)
	parts, numbered := splitZoneChange(zc, 1<<20)
	if len(parts) != 1 || numbered {
		t.Fatalf("a 100-app change became %d parts (numbered %v), want itself", len(parts), numbered)
	}
	var got events.ZoneChanged
	if err := json.Unmarshal(parts[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Part != 0 || got.Step == nil || len(got.Changes) != 100 {
		t.Fatalf("a 100-app change was told as part %d, step %v, %d changes; want itself", got.Part, got.Step != nil, len(got.Changes))
	}
}

func TestAZoneChangeTooLongOnlyWithItsStepIsToldAsOneNumberedPartWithoutIt(t *testing.T) {
	zc, want := regionChange(100)
	bare := zc
	bare.Step = nil
	b, err := json.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	parts, numbered := splitZoneChange(zc, envelopeRoom+len(b)+100)
	if len(parts) != 1 || !numbered {
		t.Fatalf("%d parts (numbered %v), want one numbered part", len(parts), numbered)
	}
	var got events.ZoneChanged
	if err := json.Unmarshal(parts[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Part != 1 || got.Parts != 1 || got.Step != nil || len(got.Changes) != len(want) {
		t.Fatalf("told as part %d of %d, step %v, %d changes; want part 1 of 1 without the step, holding all %d", got.Part, got.Parts, got.Step != nil, len(got.Changes), len(want))
	}
}

// A version is stored in parts of at most NATS's max_payload, and of events.MaxDNSMessage, the
// most DNS takes in one message, on a server whose max_payload is larger.
func TestTheZoneChangeOfTwentyThousandAppsIsStoredInPartsUnderNATSMaxPayloadAndDNSsBound(t *testing.T) {
	for _, maxPayload := range []int32{0, 8 << 20} {
		t.Run(fmt.Sprintf("max_payload %d", maxPayload), func(t *testing.T) { zoneChangeInParts(t, maxPayload) })
	}
}

func zoneChangeInParts(t *testing.T, maxPayload int32) {
	js := eventstest.StartWith(t, eventstest.Options{MaxPayload: maxPayload})
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	zc, want := regionChange(20000)
	limit := min(js.JS.Conn().MaxPayload(), events.MaxDNSMessage)
	whole, _ := events.New(events.TypeZoneChanged, "dns-test", time.Now(), zc)
	if size := len(whole.Encode()); size <= int(limit) || maxPayload > 0 && size > int(maxPayload) {
		t.Fatalf("the change takes %d bytes, within %d or over max_payload %d: the test proves nothing", size, limit, maxPayload)
	}
	z := &zone.Zone{Name: zc.Zone, Serial: zc.Serial}
	st := js.Stream(t, events.StreamDNS)
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	from := info.State.LastSeq
	// Recorded twice, as a redelivered cause would be: stored once.
	for range 2 {
		h.srv.recordChange("cause-1", zoneChange{zone: z, changes: zc.Changes, step: zc.Step})
	}

	cons, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.ZoneSubject(zc.Zone, h.srv.writer)}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []events.RecordChange
	parts := 0
	for parts == 0 || len(got) < len(want) {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("after %d parts holding %d changes: %v", parts, len(got), err)
		}
		e, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		var p events.ZoneChanged
		if err := e.Payload(&p); err != nil {
			t.Fatal(err)
		}
		parts++
		if p.Part != parts || p.Serial != 7 || p.Step != nil || e.Cause != "cause-1" {
			t.Fatalf("message %d: part %d of %d, serial %d, step %v, cause %s; want part %d of serial 7 without a step, caused by cause-1",
				parts, p.Part, p.Parts, p.Serial, p.Step != nil, e.Cause, parts)
		}
		got = append(got, p.Changes...)
	}
	if info, _ := st.Info(context.Background()); info.State.LastSeq-from != uint64(parts) {
		t.Errorf("%d messages stored for %d parts: the second publication was not taken for a duplicate", info.State.LastSeq-from, parts)
	}
	if parts < 2 || len(got) != len(want) || got[0].Name != want[0].Name || got[len(got)-1].Name != want[len(want)-1].Name {
		t.Fatalf("%d parts holding %d changes, want every one of the %d in order", parts, len(got), len(want))
	}
}

// TestAVersionToldInPartsEndsTheHistoryReadAtStart stores three versions on a zone's subject,
// the middle one too large for one message: a server starting at the last serial reads back
// the step after the parted version, and no step before it, so a secondary behind that version
// gets the whole zone (the parts carry no step to build an IXFR from).
func TestAVersionToldInPartsEndsTheHistoryReadAtStart(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	step := func(from uint32, before, after string) *events.ZoneStep {
		return &events.ZoneStep{From: from, Deleted: []string{"shop.demo.test. 30 IN A " + before}, Added: []string{"shop.demo.test. 30 IN A " + after}}
	}
	change := func(before, after string) []events.RecordChange {
		return []events.RecordChange{{Name: "shop.demo.test.", Type: "A", Before: []string{before}, After: []string{after}}}
	}
	z := func(serial uint32) *zone.Zone { return &zone.Zone{Name: "demo.test.", Serial: serial} }
	h.srv.recordChange("cause-2", zoneChange{zone: z(2), changes: change("127.0.0.11", "127.0.0.12"), step: step(1, "127.0.0.11", "127.0.0.12")})
	big, _ := regionChange(20000)
	h.srv.recordChange("cause-3", zoneChange{zone: z(3), changes: big.Changes, step: big.Step})
	h.srv.recordChange("cause-4", zoneChange{zone: z(4), changes: change("127.0.0.12", "127.0.0.11"), step: step(3, "127.0.0.12", "127.0.0.11")})

	// The versions are recorded beside the server's work: read once the last is stored.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		last, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), events.ZoneSubject("demo.test.", h.srv.writer))
		if err != nil {
			return false
		}
		e, err := events.Decode(last.Data)
		return err == nil && e.Cause == "cause-4"
	}, "the three versions stored")
	got, _, err := readHistory(context.Background(), js.JS, "demo.test.", writer{name: h.srv.o.Name, id: h.srv.id, token: h.srv.writer}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].From != 3 || got[0].To != 4 {
		var steps []string
		for _, d := range got {
			steps = append(steps, fmt.Sprintf("%d→%d", d.From, d.To))
		}
		t.Fatalf("history read at serial 4: %v; want only 3→4, the step after the version told in parts", steps)
	}
}

// withoutItsData are the ways a server starts without the data its earlier runs kept: no data
// dir, or a new, empty one (a container recreated without its volume).
var withoutItsData = []struct {
	name    string
	dataDir func(t *testing.T) string
}{
	{name: "no data dir", dataDir: func(*testing.T) string { return "" }},
	{name: "new data dir", dataDir: func(t *testing.T) string { return t.TempDir() }},
}

// TestAServerStartingWithoutItsDataReadsTheSerialServedBeforeItsOwnVersions has a server that
// starts without its data dir (none, or a new one) record a version of its own before it reads
// the zone's subject (NATS slow at start, or a zone read late among many): that version is no
// serial served before the start, and must not hide the one an earlier run of the same name
// served ahead of the clock, which a secondary may hold.
func TestAServerStartingWithoutItsDataReadsTheSerialServedBeforeItsOwnVersions(t *testing.T) {
	for _, tt := range withoutItsData {
		t.Run(tt.name, func(t *testing.T) {
			js := eventstest.Start(t)
			cfg := eventstest.Config(t, demoConfig)
			newest := func() events.ZoneChanged {
				var zc events.ZoneChanged
				m, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), events.ZoneSubject("demo.test.", "dns-test"))
				if err != nil {
					return zc
				}
				if e, err := events.Decode(m.Data); err == nil {
					_ = e.Payload(&zc)
				}
				return zc
			}
			earlier := startServer(t, js, cfg, "")
			started := serial(t, earlier.srv.Addr())
			eventstest.Eventually(t, 5*time.Second, func() bool { return newest().Serial == started }, "the start's serial %d recorded", started)
			ahead := uint32(time.Now().Unix()) + 3600
			earlier.srv.recordChange("cause-earlier", zoneChange{zone: &zone.Zone{Name: "demo.test.", Serial: ahead}})
			eventstest.Eventually(t, 5*time.Second, func() bool { return newest().Serial == ahead }, "serial %d recorded", ahead)
			earlier.stop()

			again := startServer(t, js, cfg, tt.dataDir(t))
			own := serial(t, again.srv.Addr())
			again.srv.recordChange("cause-own", zoneChange{zone: &zone.Zone{Name: "demo.test.", Serial: own}})
			eventstest.Eventually(t, 5*time.Second, func() bool { return newest().Server == again.srv.id }, "the restarted server's version recorded")

			_, served, err := readHistory(context.Background(), js.JS, "demo.test.", again.srv.self(), serial(t, again.srv.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			if served == nil || served.serial != ahead || served.server != earlier.srv.id {
				t.Fatalf("the serial read as served before the start: %+v; want %d, the earlier run's (%s), not the restarted server's own (%s)",
					served, ahead, earlier.srv.id, again.srv.id)
			}
		})
	}
}

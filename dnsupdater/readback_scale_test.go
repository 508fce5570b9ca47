package dnsupdater

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// slowLink starts a link on loopback to the NATS server at url that delays every byte by delay
// each way, as a link of round trip 2*delay does, and returns its URL.
func slowLink(t testing.TB, url string, delay time.Duration) string {
	l := eventstest.NewSlowLink(t, url)
	l.Delay(delay, delay)
	return l.URL
}

// publishHistories records what the stream holds of each zone in a read-back measurement: a run
// of id earlier, whose versions' ids key derived, served serial-2 (no step), then serial-1 and
// serial, each a step from the one before, an hour ago.
func publishHistories(t testing.TB, js *eventstest.Server, names []string, token, earlier string, serial uint32, key events.IDKey) {
	t.Helper()
	step := func(name string, from uint32) *events.ZoneStep {
		return &events.ZoneStep{From: from, Added: []string{"shop." + name + "\t5\tIN\tA\t192.0.2.1"}}
	}
	stored := func() {
		select {
		case <-js.JS.PublishAsyncComplete():
		case <-time.After(time.Minute):
			t.Fatal("the histories were not stored within a minute")
		}
	}
	for i, name := range names {
		if i%1000 == 999 {
			stored()
		}
		for _, zc := range []events.ZoneChanged{
			{Serial: serial - 2},
			{Serial: serial - 1, Step: step(name, serial-2)},
			{Serial: serial, Step: step(name, serial-1)},
		} {
			zc.Zone, zc.Server = name, earlier
			env, err := key.Derived(events.TypeZoneChanged, "dns-test", "test", changeKey("dns-test", earlier, name, zc.Serial, 0), time.Now().Add(-time.Hour), zc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.JS.PublishAsync(events.ZoneSubject(name, token), env.Encode()); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored()
}

// readBackOnce has a server named dns-test, whose versions' ids key derives, connected to url,
// read every zone of names at serial once, as its start does, and returns what it read, how many
// messages its connection sent to NATS for it and how long it took.
func readBackOnce(t testing.TB, url string, names []string, serial uint32, id string, knowsServed bool, key events.IDKey) (histories, uint64, time.Duration) {
	t.Helper()
	nc := eventstest.Connect(t, url)
	js, err := events.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{o: Options{JS: js, Name: "dns-test"}, log: zerolog.New(io.Discard), writer: "dns-test",
		id: id, knowsServed: knowsServed, idKey: key, digests: newVersionDigests()}
	zones := make([]*zone.Zone, len(names))
	for i, name := range names {
		zones[i] = &zone.Zone{Name: name, Serial: serial}
	}
	read := make(chan histories)
	got := histories{steps: map[string][]zone.Delta{}, served: map[string]recorded{}}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for h := range read {
			for name, steps := range h.steps {
				got.steps[name] = steps
			}
			for name, r := range h.served {
				got.served[name] = r
			}
		}
	}()
	before := nc.Stats().OutMsgs
	began := time.Now()
	n, failed, err := s.readZones(context.Background(), zones, map[string]bool{}, read)
	took := time.Since(began)
	asked := nc.Stats().OutMsgs - before
	close(read)
	<-collected
	if err != nil || n != len(zones) {
		t.Fatalf("read %d of %d zones, failing at %s: %v", n, len(zones), failed, err)
	}
	return got, asked, took
}

// zoneNames returns n zone names.
func zoneNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("z%05d.test.", i)
	}
	return names
}

// TestReadingBackTenThousandZonesAsksTheStreamFarFewerTimesThanThereAreZones reads back 10,000
// zones that each have three versions on the stream, as a server starting with its data dir
// does (the IXFR history and the serial served) and as one starting without it does (the serial
// served alone), on loopback and over a link of 20ms round trip: each costs a few requests to
// NATS, not one or more a zone, and reads what the stream records of every zone. The zones left
// after a read that failed part way, a few of those the stream records, are read one by one,
// many at once: one request a zone.
func TestReadingBackTenThousandZonesAsksTheStreamFarFewerTimesThanThereAreZones(t *testing.T) {
	const zones = 10000
	js := eventstest.Start(t)
	names := zoneNames(zones)
	serial := uint32(time.Now().Unix()) + 3600
	publishHistories(t, js, names, "dns-test", "id-0", serial, events.NewIDKey())
	// A zone of another server's, and one this server no longer serves, are no zone of these.
	publishHistories(t, js, zoneNames(1), "other", "id-9", serial, events.NewIDKey())
	publishHistories(t, js, []string{"gone.test."}, "dns-test", "id-0", serial, events.NewIDKey())
	slow := slowLink(t, js.URL, 10*time.Millisecond)
	for _, tt := range []struct {
		name        string
		url         string
		zones       int
		id          string
		knowsServed bool
		steps       int
		asks        uint64
	}{
		{name: "with its data dir", url: js.URL, zones: zones, id: "id-0", knowsServed: true, steps: 2, asks: zones / 100},
		{name: "without its data dir", url: js.URL, zones: zones, id: "id-1", asks: zones / 100},
		{name: "with its data dir over a slow link", url: slow, zones: zones, id: "id-0", knowsServed: true, steps: 2, asks: zones / 100},
		{name: "the zones left after a failed read", url: js.URL, zones: zones / 4, id: "id-0", knowsServed: true, steps: 2, asks: zones/4 + 3},
		{name: "the zones left after a failed read over a slow link", url: slow, zones: zones / 4, id: "id-0", knowsServed: true, steps: 2, asks: zones/4 + 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			names := names[:tt.zones]
			got, asked, took := readBackOnce(t, tt.url, names, serial, tt.id, tt.knowsServed, events.NewIDKey())
			t.Logf("%d zones read back in %v with %d messages sent to NATS", len(names), took, asked)
			for _, name := range names {
				if r, ok := got.served[name]; !ok || r.serial != serial || r.server != "id-0" {
					t.Fatalf("zone %s: served %+v (found %t), want serial %d of id-0", name, r, ok, serial)
				}
				if s := got.steps[name]; len(s) != tt.steps || len(s) > 0 && s[len(s)-1].To != serial {
					t.Fatalf("zone %s: history %+v, want %d steps to %d", name, s, tt.steps, serial)
				}
			}
			if len(got.served) != len(names) {
				t.Errorf("served read for %d zones, want %d", len(got.served), len(names))
			}
			if asked > tt.asks {
				t.Errorf("reading back %d zones sent %d messages to NATS, want at most %d", len(names), asked, tt.asks)
			}
		})
	}
}

// TestAZoneWithALongHistoryIsReadBackOverASlowLink reads back, over a link of 20ms round trip, a
// zone whose subject holds more versions than a read looks at, all of this run's (recorded
// before the read: NATS slow at start), so that the read looks at as many as it may for a serial
// an earlier run served: it finishes, where one request a version took four times longer than a
// read may wait, and was tried again from the start, for ever.
func TestAZoneWithALongHistoryIsReadBackOverASlowLink(t *testing.T) {
	js := eventstest.Start(t)
	serial := uint32(time.Now().Unix()) + 3600
	name := "long.test."
	var versions []string
	for range maxHistoryReads/3 + 1 {
		versions = append(versions, name)
	}
	// Each round of three versions ends at serial: the history chains through the newest three.
	run := events.NewIDKey()
	publishHistories(t, js, versions, "dns-test", "id-0", serial, run)
	got, asked, took := readBackOnce(t, slowLink(t, js.URL, 10*time.Millisecond), []string{name}, serial, "id-0", true, run)
	t.Logf("a zone of %d versions read back over a 20ms link in %v with %d messages sent to NATS", 3*len(versions), took, asked)
	if r, ok := got.served[name]; ok {
		t.Errorf("served %+v, want none: every version is this run's", r)
	}
	if s := got.steps[name]; len(s) != 2 || s[1].To != serial {
		t.Errorf("history %+v, want 2 steps to %d", s, serial)
	}
}

// TestASweepOfEveryZoneReadsWhatReadingEachZoneOnItsOwnReads records random versions of a few
// zones (this server's id and another's, with steps, without, out of order, this run's own,
// another server's name, more than a read looks at) and reads them back both ways a start may:
// all zones together by a sweep of the server's subjects, and each zone on its own. Both must
// find the same IXFR history and the same serial served before, with the data dir and without.
func TestASweepOfEveryZoneReadsWhatReadingEachZoneOnItsOwnReads(t *testing.T) {
	js := eventstest.Start(t)
	rng := rand.New(rand.NewPCG(1, 2))
	started, this := time.Now(), events.NewIDKey()
	base := uint32(started.Unix())
	names := zoneNames(6)
	serials := map[string]uint32{}
	for zi, name := range names {
		serial := base + uint32(rng.IntN(5))
		versions := rng.IntN(20)
		if zi == len(names)-1 {
			versions = maxHistoryReads + 50 // longer than a read looks at
		}
		for i := range versions {
			s := serial - uint32(versions-1-i)
			zc := events.ZoneChanged{Zone: name, Serial: s, Server: []string{"id-0", "id-0", "id-0", "id-1"}[rng.IntN(4)]}
			if rng.IntN(5) > 0 {
				zc.Step = &events.ZoneStep{From: s - 1 - uint32(rng.IntN(2)), Added: []string{"shop." + name + "\t5\tIN\tA\t192.0.2.1"}}
			}
			// An earlier run's, dated before this start or, after the clock was set back,
			// after it; or this run's own, its id derived with this run's key.
			at, key := started.Add(time.Duration(rng.IntN(3)-1)*time.Hour), events.NewIDKey()
			if rng.IntN(6) == 0 {
				at, key = started.Add(time.Second), this
			}
			source := "dns-test"
			if rng.IntN(8) == 0 {
				source = "dns-other" // another server of the same token
			}
			env, err := key.Derived(events.TypeZoneChanged, source, "test", changeKey(source, zc.Server, name, s, 0), at, zc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.JS.PublishAsync(events.ZoneSubject(name, "dns-test"), env.Encode()); err != nil {
				t.Fatal(err)
			}
		}
		serials[name] = serial
	}
	select {
	case <-js.JS.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("the versions were not stored within a minute")
	}
	zones := make([]*zone.Zone, len(names))
	for i, name := range names {
		zones[i] = &zone.Zone{Name: name, Serial: serials[name]}
	}
	for _, self := range []writer{
		{name: "dns-test", id: "id-0", token: "dns-test", key: this},
		{name: "dns-test", id: "id-2", token: "dns-test", key: this, fresh: true},
	} {
		r, err := openReads(context.Background(), js.JS, self.token)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		folds, err := r.sweep(context.Background(), zones, self)
		if err != nil {
			t.Fatal(err)
		}
		var steps, served int
		for i, z := range zones {
			swept, sweptServed := folds[i].result()
			if len(swept) > 0 {
				steps++
			}
			if sweptServed != nil {
				served++
			}
			alone, aloneServed, err := r.history(context.Background(), z.Name, self, z.Serial)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(swept) != fmt.Sprint(alone) || fmt.Sprint(sweptServed) != fmt.Sprint(aloneServed) {
				t.Errorf("fresh %t, zone %s: the sweep read %v and served %v, the zone on its own %v and served %v",
					self.fresh, z.Name, swept, sweptServed, alone, aloneServed)
			}
		}
		t.Logf("fresh %t: %d of %d zones with a history, %d with a serial served before", self.fresh, steps, len(zones), served)
		if served == 0 || !self.fresh && steps == 0 {
			t.Errorf("fresh %t: nothing read to compare", self.fresh)
		}
	}
}

package dnsupdater

import (
	"cmp"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// startLogged starts a server named dns-test on cfg with dataDir, whose log lines also go to
// logs, and which takes the later configurations sent on configs (nil: none).
func startLogged(t *testing.T, js *eventstest.Server, cfg *config.Config, dataDir string, configs chan *config.Config) (*Server, *eventstest.Logs) {
	t.Helper()
	logs := &eventstest.Logs{}
	srv, err := New(Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", DataDir: dataDir, Name: "dns-test",
		Log: zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)), UDPSockets: 2, Configs: configs})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	return srv, logs
}

// recordAhead has the run of the server h record that it served each zone of apexes at a serial
// an hour ahead of the clock, as versions faster than one a second leave it, waits for the stream
// to store them, stops h and returns the serial.
func recordAhead(t *testing.T, js *eventstest.Server, h *harness, apexes ...string) uint32 {
	t.Helper()
	ahead := uint32(time.Now().Unix()) + 3600
	recorded := func(apex string, serial uint32) {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			m, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), events.ZoneSubject(apex, h.srv.writer))
			if err != nil {
				return false
			}
			var zc events.ZoneChanged
			e, err := events.Decode(m.Data)
			return err == nil && e.Payload(&zc) == nil && zc.Serial == serial
		}, "serial %d of %s recorded", serial, apex)
	}
	for _, apex := range apexes {
		recorded(apex, soaOf(t, h.srv.Addr(), apex)) // the start's version, recorded first
	}
	for _, apex := range apexes {
		h.srv.recordChange("cause-earlier", zoneChange{zone: &zone.Zone{Name: apex, Serial: ahead}})
	}
	for _, apex := range apexes {
		recorded(apex, ahead)
	}
	h.stop()
	return ahead
}

// awaitZoneNotify waits for a NOTIFY of apex carrying serial want, skipping the others.
func awaitZoneNotify(t *testing.T, got <-chan *dns.Msg, apex string, want uint32) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case m := <-got:
			if m.Opcode == dns.OpcodeNotify && len(m.Question) == 1 && m.Question[0].Name == apex && len(m.Answer) == 1 {
				if soa, ok := m.Answer[0].(*dns.SOA); ok && soa.Serial == want {
					return
				}
			}
			seen = append(seen, m.Question[0].Name+" "+dns.OpcodeToString[m.Opcode])
		case <-deadline:
			t.Fatalf("no NOTIFY of %s at serial %d within 5s (got %v)", apex, want, seen)
		}
	}
}

// soaOf is the serial the server at addr answers for apex, 0 while it serves none.
func soaOf(t *testing.T, addr, apex string) uint32 {
	t.Helper()
	r := ask(t, addr, "udp", apex, dns.TypeSOA)
	if len(r.Answer) != 1 {
		return 0
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// TestAServerStartedWhileNATSIsDownPassesTheSerialTheStreamRecordsOnceNATSAnswers starts a
// server without its data dir while NATS is down for longer than its first read of the DNS
// stream waits: it answers at once, and once NATS answers it reads back the serial an earlier
// run served, serves a later one and NOTIFYs it. A secondary holding the earlier run's serial
// would otherwise ignore every change until the clock passed it.
func TestAServerStartedWhileNATSIsDownPassesTheSerialTheStreamRecordsOnceNATSAnswers(t *testing.T) {
	t.Parallel()
	for _, tt := range withoutItsData {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target, got := fakeSecondary(t)
			js := eventstest.StartWith(t, eventstest.Options{Files: true})
			cfg := eventstest.Config(t, withNotify(demoConfig, target))
			ahead := recordAhead(t, js, startServer(t, js, cfg, ""), "demo.test.")

			js.Stop()
			srv, logs := startLogged(t, js, cfg, tt.dataDir(t), nil)
			if s := serial(t, srv.Addr()); serialAfter(s, ahead) {
				t.Fatalf("serial %d served without NATS is already after %d: the test proves nothing", s, ahead)
			}
			// NATS comes back only once the server's first read of the stream has failed.
			eventstest.Eventually(t, 15*time.Second, func() bool { return strings.Contains(logs.String(), `"message":"ixfr history not read`) },
				"the first read of the stream fails while NATS is down")
			js.Restart(t)

			var now uint32
			eventstest.Eventually(t, 15*time.Second, func() bool { now = serial(t, srv.Addr()); return serialAfter(now, ahead) },
				"once NATS answers, the server serves a serial after %d, the one the stream records an earlier run served (it serves %d)", ahead, &now)
			awaitNotify(t, got, now)
		})
	}
}

// TestAZoneAReloadAddsPassesTheSerialTheStreamRecordsItServedAndNotifies adds a zone by a
// reload, after the server's start: the stream records that an earlier run served it at a
// serial ahead of the clock, which the zone passes, and its secondaries are told.
func TestAZoneAReloadAddsPassesTheSerialTheStreamRecordsItServedAndNotifies(t *testing.T) {
	for _, tt := range []struct {
		name string
		// dataDir returns the data dir of the first run and that of the second.
		dataDir func(t *testing.T) (string, string)
	}{
		{name: "no data dir", dataDir: func(*testing.T) (string, string) { return "", "" }},
		// The zone comes back: the data dir served it before, at an earlier serial than the
		// stream records (an older copy of the dir).
		{name: "the same data dir", dataDir: func(t *testing.T) (string, string) { d := t.TempDir(); return d, d }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target, got := fakeSecondary(t)
			js := eventstest.Start(t)
			first, second := tt.dataDir(t)
			withOther := eventstest.Config(t, strings.Replace(demoConfig, "zones:\n", "zones:\n  - name: other.test\n    notify: [\""+target+"\"]\n", 1))
			ahead := recordAhead(t, js, startServer(t, js, withOther, first), "demo.test.", "other.test.")

			configs := make(chan *config.Config, 1)
			srv, _ := startLogged(t, js, eventstest.Config(t, demoConfig), second, configs)
			// The start's zone passes its serial: what the start reads of the stream is read.
			eventstest.Eventually(t, 10*time.Second, func() bool { return serialAfter(serial(t, srv.Addr()), ahead) },
				"demo.test., served from the start, serves a serial after %d", ahead)
			configs <- withOther
			var now uint32
			eventstest.Eventually(t, 10*time.Second, func() bool { now = soaOf(t, srv.Addr(), "other.test."); return serialAfter(now, ahead) },
				"other.test., added by a reload, serves a serial after %d, the one the stream records an earlier run served (it serves %d)", ahead, &now)
			awaitZoneNotify(t, got, "other.test.", now)
		})
	}
}

// TestTheSerialAnEarlierRunServedIsReadPastThisRunsOwnVersions reads a zone's subject where
// this run recorded versions before the read (NATS slow at start, a zone a reload added, read
// after its first version): a version without a step (a reload, a zone new to the table) or
// more versions than the history holds end the IXFR history, but the serial an earlier run of
// the same id served, recorded before them, must still be found, or the zone keeps a serial a
// secondary already holds.
func TestTheSerialAnEarlierRunServedIsReadPastThisRunsOwnVersions(t *testing.T) {
	const name, source, token, id = "demo.test.", "dns-test", "dns-test", "id-1"
	started := time.Now()
	ahead := uint32(started.Unix()) + 3600
	now := uint32(started.Unix())
	step := func(from uint32) *events.ZoneStep {
		return &events.ZoneStep{From: from, Added: []string{"shop.demo.test.\t5\tIN\tA\t192.0.2.1"}}
	}
	type version struct {
		name string
		this []events.ZoneChanged // this run's versions, oldest first; the last is the serial read
		// earlierAt dates the earlier run's version from this run's start.
		earlierAt time.Duration
	}
	cases := []version{
		{name: "a version without a step", this: []events.ZoneChanged{{Serial: now}}},
		{name: "stepped versions after one without a step", this: []events.ZoneChanged{{Serial: now}, {Serial: now + 1, Step: step(now)}}},
		// A host of the same name sharing the subject (connected without a user of its own):
		// with a data dir, its versions are not this server's and pass nothing.
		{name: "another host's version of the same name", this: []events.ZoneChanged{{Serial: now - 10, Server: "id-2"}, {Serial: now, Step: step(now - 1)}}},
		{name: "more stepped versions than the history holds", this: func() []events.ZoneChanged {
			var out []events.ZoneChanged
			for i := range uint32(maxDeltas + 1) {
				out = append(out, events.ZoneChanged{Serial: now + i + 1, Step: step(now + i)})
			}
			return out
		}()},
	}
	for _, tt := range cases {
		tt.earlierAt = time.Hour
		cases = append(cases, tt)
	}
	for i := range cases[:len(cases)/2] {
		cases[i].earlierAt = -time.Hour
		cases[len(cases)/2+i].name += ", the earlier run dated after this start"
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			js := eventstest.Start(t)
			// Each run derives its versions' ids with a key of its own.
			earlier, this := events.NewIDKey(), events.NewIDKey()
			publish := func(key events.IDKey, at time.Time, zc events.ZoneChanged) {
				t.Helper()
				zc.Zone, zc.Server = name, cmp.Or(zc.Server, id)
				env, err := key.Derived(events.TypeZoneChanged, source, "test", changeKey(source, zc.Server, name, zc.Serial, zc.Part), at, zc)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := js.JS.Publish(context.Background(), events.ZoneSubject(name, token), env.Encode()); err != nil {
					t.Fatal(err)
				}
			}
			// The earlier run's version is dated an hour before this start, or, when the
			// clock was set back since (NTP at boot, the data dir moved to a host behind), an
			// hour after it.
			publish(earlier, started.Add(tt.earlierAt), events.ZoneChanged{Serial: ahead, Step: step(ahead - 1)})
			for _, zc := range tt.this {
				publish(this, started.Add(time.Second), zc)
			}
			self := writer{name: source, id: id, token: token, key: this}
			_, served, err := readHistory(context.Background(), js.JS, name, self, tt.this[len(tt.this)-1].Serial)
			if err != nil {
				t.Fatal(err)
			}
			if served == nil || served.serial != ahead {
				t.Errorf("read served %+v, want serial %d, the one the earlier run served", served, ahead)
			}
		})
	}
}

// readHistory reads what the DNS stream records of zone name for self, as the read-back reads a
// zone on its own.
func readHistory(ctx context.Context, js jetstream.JetStream, name string, self writer, serial uint32) ([]zone.Delta, *recorded, error) {
	r, err := openReads(ctx, js, self.token)
	if err != nil {
		return nil, nil, err
	}
	defer r.close()
	return r.history(ctx, name, self, serial)
}

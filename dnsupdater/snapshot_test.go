package dnsupdater

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

func TestServerAnswersFromItsSnapshotWhileNATSIsUnreachable(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	failedOver := func(addr string) bool {
		return slices.Equal(addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.12"})
	}
	eventstest.Eventually(t, 2*time.Second, func() bool { return failedOver(h.srv.Addr()) }, "answer moves to us-east")
	before := serial(t, h.srv.Addr())
	eventstest.Eventually(t, 2*time.Second, func() bool {
		s, err := loadSnapshot(dir)
		return err == nil && s != nil && s.Serials["demo.test."] == before
	}, "snapshot at serial %d in %s", before, dir)

	// NATS goes away: the running server keeps answering its last state.
	js.Server.Shutdown()
	if !failedOver(h.srv.Addr()) {
		t.Fatalf("with NATS down the running server must keep its last answer")
	}
	h.stop()

	// A server started cold, NATS still down, answers from the snapshot at once.
	cold := startServer(t, js, cfg, dir)
	if !failedOver(cold.srv.Addr()) {
		t.Errorf("a cold start without NATS must answer from the snapshot")
	}
	if got := serial(t, cold.srv.Addr()); got != before {
		t.Errorf("serial after a cold start: want %d as in the snapshot, got %d", before, got)
	}
}

func TestADamagedSnapshotIsIgnoredAndTheServerStarts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), dir)
	if got := addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Errorf("want the answer of an empty state [127.0.0.11], got %v", got)
	}
}

func TestSerialsIncreaseInSerialNumberArithmetic(t *testing.T) {
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	tests := []struct {
		name string
		prev uint32
		now  time.Time
		want uint32
	}{
		{name: "a fresh zone takes the current time", prev: 0, now: at(1_700_000_000), want: 1_700_000_000},
		{name: "a later clock moves the serial to the clock", prev: 1_700_000_000, now: at(1_700_000_100), want: 1_700_000_100},
		{name: "changes faster than the clock count up by one", prev: 1_700_000_100, now: at(1_700_000_100), want: 1_700_000_101},
		{name: "a clock behind the serial counts up by one", prev: 1_800_000_000, now: at(1_700_000_000), want: 1_800_000_001},
		{name: "the serial wraps past 2^32-1", prev: 4294967295, now: at(5), want: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NextSerial(tt.prev, tt.now)
			if got != tt.want {
				t.Errorf("want %d, got %d", tt.want, got)
			}
			if !serialAfter(got, tt.prev) {
				t.Errorf("%d is not after %d", got, tt.prev)
			}
		})
	}
}

func TestARestartWithChangedContentTakesALaterSerialAndNotifies(t *testing.T) {
	target, got := fakeSecondary(t)
	dir := t.TempDir()
	js := eventstest.Start(t)
	base := withNotify(demoConfig, target)
	withRecord := func(conf, record string) string {
		return strings.Replace(conf, "  - name: demo.test\n", "  - name: demo.test\n    records: [\""+record+"\"]\n", 1)
	}
	steps := []struct {
		name    string
		conf    string
		changed bool
	}{
		{name: "first start", conf: withRecord(base, "www IN A 192.0.2.1"), changed: true},
		{name: "same configuration", conf: withRecord(base, "www IN A 192.0.2.1"), changed: false},
		{name: "a static record changed", conf: withRecord(base, "www IN A 192.0.2.2"), changed: true},
		{name: "an app added", conf: withRecord(base, "www IN A 192.0.2.2") + `
  - name: blog
    fqdn: blog.demo.test
    pools: [{name: p1, endpoints: [{address: "127.0.0.31:80"}]}]
`, changed: true},
	}
	var prev uint32
	for i, st := range steps {
		h := startServer(t, js, eventstest.Config(t, st.conf), dir)
		s := serial(t, h.srv.Addr())
		switch {
		case i > 0 && st.changed && !serialAfter(s, prev):
			t.Errorf("%s: want a serial later than %d, got %d", st.name, prev, s)
		case i > 0 && !st.changed && s != prev:
			t.Errorf("%s: want serial %d kept, got %d", st.name, prev, s)
		}
		if st.changed {
			awaitNotify(t, got, s)
		}
		h.stop()
		prev = s
	}
}

func TestSnapshotsAreTakenAtMostOncePerSecondAndNoChangeIsLeftOut(t *testing.T) {
	var p snapshotPacer
	t0 := time.Unix(1_700_000_000, 0)
	for _, step := range []struct {
		at          time.Duration
		want, after bool // taken, and pending after
	}{
		{0, true, false},
		{100 * time.Millisecond, false, true}, // within the second: pending, due later
		{900 * time.Millisecond, false, true},
		{time.Second, true, false},
		{2500 * time.Millisecond, true, false},
	} {
		if got := p.take(t0.Add(step.at)); got != step.want || p.pending != step.after {
			t.Errorf("at %s: take = %v, pending %v; want %v, %v", step.at, got, p.pending, step.want, step.after)
		}
		if p.pending && p.due == nil {
			t.Errorf("at %s: a pending snapshot has no due time", step.at)
		}
		p.due = nil
	}
}

func TestAServerStoppedRightAfterAChangeKeepsItInItsSnapshot(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	// Within the second after the start's snapshot, the endpoint goes down, comes back, and the
	// server stops.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.12"})
	}, "the answer moved to us-east")
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.11"})
	}, "the answer back to us-west")
	last := serial(t, h.srv.Addr())
	h.stop()
	if s, err := loadSnapshot(dir); err != nil || s == nil || s.Serials["demo.test."] != last {
		t.Fatalf("snapshot after the stop: %+v, %v; want serial %d, the last version served", s, err, last)
	}
}

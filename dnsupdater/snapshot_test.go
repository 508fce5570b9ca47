package dnsupdater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestServerAnswersFromItsSnapshotWhileNATSIsUnreachable(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	failedOver := func(addr string) bool { return shopAnswers(t, addr, "127.0.0.12")() }
	eventstest.Eventually(t, 10*time.Second, func() bool { return failedOver(h.srv.Addr()) }, "answer moves to us-east")
	before := serial(t, h.srv.Addr())
	eventstest.Eventually(t, 10*time.Second, func() bool {
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
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the answer moved to us-east")
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"), "the answer back to us-west")
	last := serial(t, h.srv.Addr())
	h.stop()
	if s, err := loadSnapshot(dir); err != nil || s == nil || s.Serials["demo.test."] != last {
		t.Fatalf("snapshot after the stop: %+v, %v; want serial %d, the last version served", s, err, last)
	}
}

// TestABaseAndItsJournalLoadAsTheWholeStateTheyWereSavedFrom folds random transitions into a
// projector and hands its saves to a writer as the refresher does (a save the writer has not
// taken yet merges with the next), and checks after every write that the data dir loads to
// exactly the state a whole snapshot of the projector holds, across journal lines and the
// bases written again when the journal outgrows them.
func TestABaseAndItsJournalLoadAsTheWholeStateTheyWereSavedFrom(t *testing.T) {
	cfg := eventstest.Config(t, incrementalConfig)
	p, _, clock := clockedProjector(t, cfg)
	p.project()
	var subjects []string
	for _, a := range cfg.Apps {
		for _, pl := range a.Pools {
			subjects = append(subjects, events.PoolStateSubject(a.Name, pl.Name))
			for _, e := range pl.Endpoints {
				subjects = append(subjects, events.EndpointStateSubject(a.Name, pl.Name, e.Name))
			}
		}
	}
	dir := t.TempDir()
	w := &snapshotWriter{dir: dir, minJournal: 4 << 10}
	defer w.close()
	rng := rand.New(rand.NewPCG(3, 4))
	var pending *snapshotSave
	seq, bases, lines := uint64(0), 0, 0
	for round := range 400 {
		for range rng.IntN(4) {
			seq++
			subject := subjects[rng.IntN(len(subjects))]
			typ := []string{events.TypeEndpointDown, events.TypeEndpointUp}[rng.IntN(2)]
			if strings.HasPrefix(subject, "detour.state.pool") {
				typ = []string{events.TypePoolDown, events.TypePoolUp}[rng.IntN(2)]
			}
			env, err := events.New(typ, "test", *clock, events.Transition{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.apply(subject, seq, env, env.Encode()); err != nil {
				t.Fatal(err)
			}
		}
		*clock = clock.Add(time.Duration(rng.IntN(2)) * time.Second)
		p.recompute()
		save := p.save(round == 0)
		if pending != nil {
			save = pending.merge(save)
		}
		pending = save
		if rng.IntN(3) == 0 {
			continue // the writer is busy: the save waits, and merges with the next
		}
		gen := w.generation
		if err := w.write(pending); err != nil {
			t.Fatal(err)
		}
		pending = nil
		if w.generation != gen {
			bases++
		} else {
			lines++
		}
		got, err := loadSnapshot(dir)
		if err != nil || got == nil {
			t.Fatalf("round %d: load: %v, %v", round, got, err)
		}
		want := sortedEvents(p.latest)
		if !slices.EqualFunc(got.Events, want, func(a, b storedEvent) bool {
			return a.Subject == b.Subject && a.Seq == b.Seq && a.Event.ID == b.Event.ID
		}) {
			t.Fatalf("round %d: loaded %d events, want the projector's %d:\n%v\nwant\n%v", round, len(got.Events), len(want), got.Events, want)
		}
		if !maps.Equal(got.Serials, p.serials) || got.LastSeq != p.view.LastSeq() {
			t.Fatalf("round %d: loaded serials %v at seq %d, want %v at %d", round, got.Serials, got.LastSeq, p.serials, p.view.LastSeq())
		}
	}
	if bases < 3 || lines < 20 {
		t.Fatalf("%d bases and %d journal lines written: the test did not exercise both", bases, lines)
	}
}

func TestAJournalLineCutShortEndsTheJournal(t *testing.T) {
	dir := t.TempDir()
	w := &snapshotWriter{dir: dir}
	defer w.close()
	write := func(s *snapshotSave) {
		t.Helper()
		if err := w.write(s); err != nil {
			t.Fatal(err)
		}
	}
	write(&snapshotSave{full: true, serials: map[string]uint32{"demo.test.": 7}, lastSeq: 1,
		events: map[string]storedEvent{"a": {Subject: "a", Seq: 1, Event: downEvent("1")}}})
	write(&snapshotSave{serials: map[string]uint32{"demo.test.": 8}, lastSeq: 2,
		events: map[string]storedEvent{"b": {Subject: "b", Seq: 2, Event: downEvent("2")}}})
	write(&snapshotSave{serials: map[string]uint32{"demo.test.": 9}, lastSeq: 3,
		events: map[string]storedEvent{"a": {Subject: "a", Seq: 3, Event: downEvent("3")}}})
	journal := filepath.Join(dir, journalFile)
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	// A crash while the last line was written leaves part of it.
	if err := os.WriteFile(journal, b[:len(b)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := loadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(s *snapshot) (out []string) {
		for _, e := range s.Events {
			out = append(out, e.Subject+"@"+e.Event.ID)
		}
		return out
	}
	if got := ids(s); !slices.Equal(got, []string{"a@1", "b@2"}) || s.Serials["demo.test."] != 8 || s.LastSeq != 2 {
		t.Fatalf("loaded %v, serial %d, seq %d; want [a@1 b@2] at serial 8, seq 2: the base and the whole line", got, s.Serials["demo.test."], s.LastSeq)
	}
	// A new base leaves the old journal's lines unread, though they are still on disk.
	if err := w.writeBase(nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journal, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = loadSnapshot(dir); err != nil || !slices.Equal(ids(s), []string{"b@2", "a@3"}) || s.Serials["demo.test."] != 9 {
		t.Fatalf("after a new base: loaded %v, serial %d, %v; want [b@2 a@3] at serial 9, the base's, and no older line", ids(s), s.Serials["demo.test."], err)
	}
}

// TestASaveThatFailedIsNotLeftOutOfTheNextOne fails a journal line (the journal cannot be
// opened, as on a full disk or a read-only directory) and writes the next save once the disk
// is back: the files must load to the state with both saves' changes, never to the base with
// the later line alone (a state that never was, served while NATS is away).
func TestASaveThatFailedIsNotLeftOutOfTheNextOne(t *testing.T) {
	dir := t.TempDir()
	w := &snapshotWriter{dir: dir}
	defer w.close()
	if err := w.write(&snapshotSave{full: true, serials: map[string]uint32{"demo.test.": 7}, lastSeq: 1,
		events: map[string]storedEvent{"a": {Subject: "a", Seq: 1, Event: downEvent("1")}}}); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, journalFile)
	if err := os.Mkdir(journal, 0o755); err != nil { // the journal cannot be opened
		t.Fatal(err)
	}
	if err := w.write(&snapshotSave{serials: map[string]uint32{"demo.test.": 8}, lastSeq: 2,
		events: map[string]storedEvent{"b": {Subject: "b", Seq: 2, Event: downEvent("2")}}}); err == nil {
		t.Fatal("a save whose journal cannot be opened reported no error")
	}
	if err := os.Remove(journal); err != nil {
		t.Fatal(err)
	}
	if err := w.write(&snapshotSave{serials: map[string]uint32{"demo.test.": 9}, lastSeq: 3,
		events: map[string]storedEvent{"c": {Subject: "c", Seq: 3, Event: downEvent("3")}}}); err != nil {
		t.Fatal(err)
	}
	s, err := loadSnapshot(dir)
	if err != nil || s == nil {
		t.Fatalf("load: %v, %v", s, err)
	}
	var got []string
	for _, e := range s.Events {
		got = append(got, e.Subject+"@"+e.Event.ID)
	}
	if !slices.Equal(got, []string{"a@1", "b@2", "c@3"}) || s.Serials["demo.test."] != 9 || s.LastSeq != 3 {
		t.Fatalf("loaded %v at serial %d, seq %d; want [a@1 b@2 c@3] at serial 9, seq 3: the failed save's change is lost", got, s.Serials["demo.test."], s.LastSeq)
	}
}

func TestADamagedJournalLineIsToldAndEndsTheJournal(t *testing.T) {
	dir := t.TempDir()
	w := &snapshotWriter{dir: dir}
	defer w.close()
	for i, subject := range []string{"a", "b", "c", "d"} {
		if err := w.write(&snapshotSave{full: i == 0, serials: map[string]uint32{"demo.test.": uint32(7 + i)}, lastSeq: uint64(1 + i),
			events: map[string]storedEvent{subject: {Subject: subject, Seq: uint64(1 + i), Event: downEvent(subject)}}}); err != nil {
			t.Fatal(err)
		}
	}
	journal := filepath.Join(dir, journalFile)
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[1] = append([]byte("\x00garbage"), lines[1][9:]...) // the second line of three, its newline kept
	if err := os.WriteFile(journal, bytes.Join(lines, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := loadSnapshot(dir)
	if err != nil || s == nil {
		t.Fatalf("load: %v, %v", s, err)
	}
	if len(s.Events) != 2 || s.Serials["demo.test."] != 8 {
		t.Errorf("loaded %v at serial %d; want the base and the first line, at serial 8", s.Events, s.Serials["demo.test."])
	}
	if s.damaged == nil || !strings.Contains(s.damaged.Error(), journalFile+" line 2") {
		t.Errorf("damage told: %v; want it to name %s line 2", s.damaged, journalFile)
	}
}

func TestARestartAfterACrashServesALaterSerialThanAnyServedBefore(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{name: "serials file intact", damage: func(*testing.T, string) {}},
		// Without the marks the server cannot know how far past its snapshot it served.
		{name: "serials file damaged", damage: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, serialsFile), []byte(`{"version":1,"reser`), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "serials file lost", damage: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, serialsFile)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { restartAfterACrash(t, tt.damage) })
	}
}

// restartAfterACrash serves three versions, the last two within the second after a snapshot,
// and restarts on the disk as it was at that snapshot, damaged by damage.
func restartAfterACrash(t *testing.T, damage func(t *testing.T, dir string)) {
	target, notified := fakeSecondary(t)
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, withNotify(demoConfig, target))
	h := startServer(t, js, cfg, dir)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "answer moves to us-east")
	first := serial(t, h.srv.Addr())
	eventstest.Eventually(t, 10*time.Second, func() bool {
		s, err := loadSnapshot(dir)
		return err == nil && s != nil && s.Serials["demo.test."] == first
	}, "snapshot at serial %d", first)
	// What the disk holds now is what a crash from here on would leave: the two versions
	// below are served within the second the snapshot waits before it takes them.
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"), "answer back to us-west")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "answer moves to us-east again")
	last := serial(t, h.srv.Addr())
	if !serialAfter(last, first) {
		t.Fatalf("serial %d after two changes, not after %d", last, first)
	}
	h.stop()
	damage(t, crashed)

	// Restarted on the disk of the crash: a secondary may hold any serial up to last, so the
	// first version served must be later, though its content is that of the snapshot's.
	r := startServer(t, js, cfg, crashed)
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, r.srv.Addr(), "127.0.0.12"), "the restarted server answers us-east")
	got := serial(t, r.srv.Addr())
	if !serialAfter(got, last) {
		t.Fatalf("after the crash the server serves serial %d; want one after %d, the last served before it (the snapshot held %d)", got, last, first)
	}
	awaitNotify(t, notified, got)
}

// copyDir copies the regular files of from into to, as a crash would leave them: a file renamed
// away or removed between the listing and its read is left out.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // renamed away or removed since listed (a snapshot's temp file): gone from a crash's copy too
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzLoadSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"generation":5,"serials":{"demo.test.":7},"last_seq":1,"events":[{"subject":"a","seq":1,"event":{}}]}`),
		[]byte(`{"generation":5,"serials":{"demo.test.":8},"last_seq":2,"events":[{"subject":"b","seq":2,"event":{}}]}`+"\n"+`{"generation":5,"ser`))
	f.Add([]byte(`{"version":1,"serials":null}`), []byte("\n\n"))
	f.Fuzz(func(t *testing.T, base, journal []byte) {
		s, err := decodeSnapshot(base, bytes.NewReader(journal))
		if err != nil {
			return
		}
		if s.Serials == nil {
			t.Fatalf("a decoded snapshot has no serials map")
		}
		if !slices.IsSortedFunc(s.Events, bySeq) {
			t.Fatalf("events not in stream order: %v", s.Events)
		}
		seen := map[string]bool{}
		for _, e := range s.Events {
			if seen[e.Subject] {
				t.Fatalf("subject %q twice: %v", e.Subject, s.Events)
			}
			seen[e.Subject] = true
		}
	})
}

// TestASaveTakenByARefreshThatMovesNoAnswerIsHandedOver drives the refresher by hand: a
// snapshot is due (one was held back within the last second) when an event that moves no
// answer is folded; the save the refresh takes holds it and must reach the writer, since no
// later save holds it again.
func TestASaveTakenByARefreshThatMovesNoAnswerIsHandedOver(t *testing.T) {
	js := eventstest.Start(t)
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "127.0.0.1:0", DataDir: t.TempDir(), Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.ls.close)
	subject := events.EndpointStateSubject("shop", "us-east", "127-0-0-12_8081") // the backup: us-west still answers
	env, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{App: "shop", Pool: "us-east", Endpoint: "127-0-0-12_8081", From: events.StatusUp, To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := srv.proj.apply(subject, 1, env, env.Encode()); err != nil || !changed {
		t.Fatalf("apply: changed %v, %v", changed, err)
	}
	saves := make(chan *snapshotSave, 1)
	pacer := snapshotPacer{last: time.Now().Add(-2 * time.Second), pending: true, based: true}
	srv.refresh(t.Context(), kick{cause: env.ID, synced: true}, saves, &pacer)
	select {
	case got := <-saves:
		if _, ok := got.events[subject]; !ok {
			t.Fatalf("the save handed over holds %d events, not %s", len(got.events), subject)
		}
	default:
		t.Fatalf("the refresh took a save (pending %v) and did not hand it to the writer", pacer.pending)
	}
}

// FuzzRestoreSnapshot restores whatever a damaged or forged base and journal decode to into a
// projector of a real configuration, with reserved serials, and projects it: the server must
// start, whatever the files hold.
func FuzzRestoreSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"generation":5,"serials":{"demo.test.":7},"last_seq":3,"digests":{"demo.test.":"x"},"events":[`+
		`{"subject":"detour.state.endpoint.shop.us-west.127-0-0-11_8081","seq":2,"event":{"type":"detour.endpoint.down.v1","id":"1","time":"2026-01-01T00:00:00Z","source":"s","data":{"app":"shop","pool":"us-west","endpoint":"127-0-0-11_8081","from":"up","to":"down"}}},`+
		`{"subject":"detour.state.pool.shop.us-west","seq":3,"event":{"type":"detour.pool.down.v1","id":"2","time":"2026-01-01T00:00:00Z","source":"s","data":{"app":"shop","pool":"us-west","to":"down"}}}]}`),
		[]byte(`{"generation":5,"serials":{"demo.test.":4294967295},"last_seq":9,"events":[{"subject":"detour.state.edge.x","seq":9,"event":{"type":"detour.edge.down.v1","id":"3","time":"2026-01-01T00:00:00Z","data":{}}}]}`+"\n"),
		[]byte(`{"version":1,"reserved":{"demo.test.":12}}`))
	f.Add([]byte(`{"version":1,"serials":{"demo.test.":0,"other.":1},"events":[{"subject":"detour.state.batch.0","seq":1,"event":{"type":"detour.state.batch.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"items":[]}}}]}`),
		[]byte{}, []byte(`{"version":1,"reserved":{"demo.test.":2147483648}}`))
	cfg := eventstest.Config(f, demoConfig)
	static, err := zone.Compile(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, base, journal, marks []byte) {
		s, err := decodeSnapshot(base, bytes.NewReader(journal))
		if err != nil {
			return
		}
		p := newProjector(static, func() time.Time { return time.Unix(1_800_000_000, 0) })
		p.restore(s)
		var m serialMarks
		if json.Unmarshal(marks, &m) == nil {
			p.reserved(m.Reserved)
		}
		start := maps.Clone(p.serials)
		for _, z := range p.project() {
			if prev, ok := start[z.Name]; ok && serialAfter(prev, z.Serial) {
				t.Fatalf("zone %s restored at serial %d (snapshot and reserved serials) projects at %d, before it", z.Name, prev, z.Serial)
			}
		}
	})
}

func TestTwoServersCannotShareADataDir(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	_, err := New(Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", DataDir: dir, Name: "dns-other",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use by another running dns server") {
		t.Fatalf("a second server on the data dir of a running one: want an error naming %s as in use, got %v", dir, err)
	}
	h.stop()
	// Once the first has stopped, the directory is free again.
	startServer(t, js, cfg, dir).stop()
}

func TestAServerStartsFromADataDirItCannotLock(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "answer moves to us-east")
	h.stop()
	// The lock cannot be taken (as on a read-only mount, where no file can be created): the
	// server still starts from its snapshot, NATS away.
	if err := os.Remove(filepath.Join(dir, lockFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, lockFile), 0o755); err != nil {
		t.Fatal(err)
	}
	js.Server.Shutdown()
	cold := startServer(t, js, cfg, dir)
	if got := addrs(ask(t, cold.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Errorf("a server on a data dir it cannot lock answers %v; want [127.0.0.12], its snapshot's", got)
	}
}

func TestAStartRemovesTheTemporaryFilesACrashLeft(t *testing.T) {
	dir := t.TempDir()
	stale := []string{snapshotFile + ".123456", serialsFile + ".42"}
	for _, name := range append(slices.Clone(stale), "keep.json") {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js := eventstest.Start(t)
	startServer(t, js, eventstest.Config(t, demoConfig), dir).stop()
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s, left by a crash during a write, is still there after a start: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.json")); err != nil {
		t.Errorf("a file of another name was removed: %v", err)
	}
}

// shopAnswers reports, each time it is called, whether the server at addr answers
// shop.demo.test A over UDP with exactly want.
func shopAnswers(t *testing.T, addr string, want ...string) func() bool {
	return func() bool {
		return slices.Equal(addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)), want)
	}
}

// downEvent is an endpoint-down event with the given id, for the snapshot writer's tests.
func downEvent(id string) events.Envelope {
	return events.Envelope{Type: events.TypeEndpointDown, ID: id, Time: time.Unix(1, 0).UTC(), Source: "test", Data: []byte(`{}`)}
}

// FuzzStoredEventsWrittenAsReceivedLoadAsIfEncodedAgain is the differential test of the
// snapshot's events written as the stream stored them: whatever message decodes as an event, the
// line holding it as it came loads as the event encoded again (json.Marshal, as every save did
// before) loads, and a journal of it is read whole.
func FuzzStoredEventsWrittenAsReceivedLoadAsIfEncodedAgain(f *testing.F) {
	env, err := events.New(events.TypeEndpointDown, "prober/us-west/p1", time.Unix(1_800_000_000, 5).UTC(),
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "127-0-0-11_8081", From: events.StatusUp, To: events.StatusDown, Reason: "3 of 3 checks failed <&>"})
	if err != nil {
		f.Fatal(err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, env.Encode(), "", "  "); err != nil {
		f.Fatal(err)
	}
	f.Add("detour.state.endpoint.shop.us-west.127-0-0-11_8081", uint64(7), env.Encode())
	f.Add("detour.state.pool.shop.us-west", uint64(1<<63), indented.Bytes())
	f.Add(`shop"s`, uint64(3), env.Encode())
	f.Add("a \"quoted\"\n<subject>\xff é", uint64(0),
		[]byte(" {\"type\":\"detour.x\",\"id\":\"1\",\"time\":\"2026-01-01T00:00:00+02:00\",\"data\":\n[1, 2],\"extra\":{\"type\":\"y\"},\"source\":\"s\\u00e9\\n\"}\r\n"))
	f.Fuzz(func(t *testing.T, subject string, seq uint64, raw []byte) {
		env, err := events.Decode(raw)
		if err != nil {
			return
		}
		enc, err := encodeStored(storedEvent{Subject: subject, Seq: seq, Event: env, raw: raw})
		if err != nil {
			t.Fatalf("encode a decoded event: %v", err)
		}
		got := enc.appendTo(nil)
		if bytes.ContainsAny(got, "\n") {
			t.Fatalf("the stored event spans lines: %q", got)
		}
		want, err := json.Marshal(storedEvent{Subject: subject, Seq: seq, Event: env})
		if err != nil {
			t.Fatal(err)
		}
		var g, w storedEvent
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("the stored event %q does not decode: %v", got, err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if g.Subject != w.Subject || g.Seq != w.Seq || g.Event.Type != w.Event.Type || g.Event.ID != w.Event.ID ||
			g.Event.Source != w.Event.Source || g.Event.Cause != w.Event.Cause ||
			!g.Event.Time.Equal(w.Event.Time) || g.Event.Time.Format(time.RFC3339Nano) != w.Event.Time.Format(time.RFC3339Nano) ||
			!reflect.DeepEqual(decodeJSON(t, g.Event.Data), decodeJSON(t, w.Event.Data)) {
			t.Fatalf("written as received %q loads as %+v, encoded again %q as %+v", got, g, want, w)
		}
		s := snapshot{Generation: 1, Serials: map[string]uint32{}}
		readJournal(&s, bytes.NewReader(withEvents([]byte(`{"generation":1,"serials":{},"last_seq":0}`), []encodedEvent{enc}, '\n')))
		if s.damaged != nil || len(s.Events) != 1 || s.Events[0].Subject != w.Subject {
			t.Fatalf("a journal line of %q reads as %+v (damaged: %v)", got, s.Events, s.damaged)
		}
	})
}

// decodeJSON returns the value b holds, for comparing JSON whatever its spacing and escapes.
func decodeJSON(t *testing.T, b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// TestABaseStreamedInChunksIsTheBaseBuiltWhole writes bases of 0 to 3,000 events (up to 27
// chunks) a chunk at a time and holds each to the bytes withEvents builds whole (what every base
// was before), and a base whose write fails to report the failure.
func TestABaseStreamedInChunksIsTheBaseBuiltWhole(t *testing.T) {
	head := []byte(`{"version":1,"generation":7,"serials":{"demo.test.":3},"last_seq":9}`)
	var all []encodedEvent
	for i := range 3000 {
		env, err := events.New(events.TypeEndpointDown, "decider/d1", time.Unix(1_800_000_000, 0).UTC(),
			events.Transition{App: fmt.Sprintf("app%d", i), Pool: "main", Endpoint: "e", From: events.StatusUp, To: events.StatusDown, Reason: strings.Repeat("r", i%700)})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := encodeStored(storedEvent{Subject: events.EndpointStateSubject(fmt.Sprintf("app%d", i), "main", "e"), Seq: uint64(i + 1), Event: env, raw: env.Encode()})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, enc)
	}
	for _, n := range []int{0, 1, 2, 100, 101, 1000, 3000} {
		var got bytes.Buffer
		size, err := streamWithEvents(&got, head, all[:n], '\n')
		want := withEvents(head, all[:n], '\n')
		if err != nil || size != len(want) || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%d events: streamed %d bytes (told %d, %v), built whole %d; they differ", n, got.Len(), size, err, len(want))
		}
	}
	if _, err := streamWithEvents(failingWriter{}, head, all, '\n'); err == nil {
		t.Errorf("a base whose write failed reported no error")
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestARestartWithoutItsDataServesALaterSerialThanTheStreamRecordsItServed(t *testing.T) {
	for _, tt := range []struct {
		name string
		// dataDir returns the data dir of the first run and that of the second.
		dataDir func(t *testing.T) (string, string)
	}{
		{name: "no data dir", dataDir: func(*testing.T) (string, string) { return "", "" }},
		// A container recreated without a volume: the data dir is new and empty.
		{name: "data dir lost", dataDir: func(t *testing.T) (string, string) { return t.TempDir(), t.TempDir() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first, second := tt.dataDir(t)
			js := eventstest.Start(t)
			cfg := eventstest.Config(t, demoConfig)
			h := startServer(t, js, cfg, first)
			// Versions faster than one a second take the serial past the clock (the previous
			// serial + 1): the clock alone is no longer later than what secondaries hold.
			last := serial(t, h.srv.Addr())
			for i := 0; int32(last-uint32(time.Now().Unix())) < 20; i++ {
				if i%2 == 0 {
					endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
				} else {
					endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
				}
				prev := last
				eventstest.Eventually(t, 10*time.Second, func() bool { last = serial(t, h.srv.Addr()); return last != prev }, "version %d served", i+1)
			}
			eventstest.Eventually(t, 5*time.Second, func() bool {
				m, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), events.ZoneSubject("demo.test.", h.srv.writer))
				if err != nil {
					return false
				}
				e, err := events.Decode(m.Data)
				var zc events.ZoneChanged
				return err == nil && e.Payload(&zc) == nil && zc.Serial == last
			}, "serial %d recorded", last)
			h.stop()

			again := startServer(t, js, cfg, second)
			// A secondary holding last ignores every serial not after it (RFC 1982), and so
			// every answer the restarted server gives until its clock passes last.
			eventstest.Eventually(t, 5*time.Second, func() bool { return serialAfter(serial(t, again.srv.Addr()), last) },
				"the restarted server serves a serial after %d, the last the stream records it served (it serves %d)", last, serial(t, again.srv.Addr()))
		})
	}
}

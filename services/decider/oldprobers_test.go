package decider

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// lockedBuffer is a log sink safe for the watcher's goroutine and the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAProberOlderThanTheDecidersIsLogged: batches on the old subject
// (detour.probe.<region>.batch.<prober>) never reach a decider, so one that PROBES stores while
// the decider runs is logged, once per subject; what PROBES held before it started, and the
// batches on today's subjects, are not.
func TestAProberOlderThanTheDecidersIsLogged(t *testing.T) {
	srv := eventstest.Start(t)
	publish := func(subject string) {
		t.Helper()
		if _, err := srv.JS.Publish(t.Context(), subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	publish("detour.probe.eu.batch.p0") // before the decider started: an old prober since upgraded
	var out lockedBuffer
	ticks := make(chan time.Time) // a tick is taken once the count before it is done
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		watchOldProbers(ctx, srv.JS, zerolog.New(&out), func() []string { return nil }, ticks)
	}()
	defer func() { cancel(); <-stopped }()
	look := func() { ticks <- time.Now() }
	look() // the first count is done
	publish(events.ProbeBatchSubject("eu", "p1"))
	publish(events.ProbeSubject("eu", "shop", "west", "w1"))
	publish("detour.probe.us.batch.p2")
	look()
	look() // the count after the old prober's batch is done
	for range 3 {
		publish("detour.probe.us.batch.p2")
		look()
	}
	look()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"subject":"detour.probe.us.batch.p2"`) || !strings.Contains(lines[0], "older than this decider") {
		t.Errorf("log:\n%s\nwant one warning, naming detour.probe.us.batch.p2", out.String())
	}
}

// TestAFloodOfOldBatchSubjectsCostsOneLineALook: a prober's credentials may publish on any
// subject of its region, the old batch subjects included, and PROBES keeps a message on each of a
// million of them within its bound. The watch reads one message of each region a look, whatever
// their number, and logs at most one line of each region a look.
func TestAFloodOfOldBatchSubjectsCostsOneLineALook(t *testing.T) {
	srv := eventstest.Start(t)
	var out lockedBuffer
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		watchOldProbers(ctx, srv.JS, zerolog.New(&out), func() []string { return []string{"us", "eu"} }, ticks)
	}()
	defer func() { cancel(); <-stopped }()
	look := func() { ticks <- time.Now() }
	look()
	for i := range 300 {
		if _, err := srv.JS.Publish(t.Context(), fmt.Sprintf("detour.probe.us.batch.forged-%d", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	look()
	look()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"subject":"detour.probe.us.batch.forged-299"`) {
		t.Errorf("log after a flood of 300 old batch subjects, %d lines:\n%.2000s\nwant one warning, naming the last", len(lines), out.String())
	}
}

// TestAnOldProberOfOneRegionDoesNotHideAnothers: the watch read the last message of the old batch
// subjects of every region at once, so of old probers in several regions the busiest hid the
// others, and us's credentials publishing again on a subject already logged hid eu's old prober
// for good. It reads each configured region's last one, and logs a subject again an hour after it
// last did, never keeping more than a line of each region a look for an hour.
func TestAnOldProberOfOneRegionDoesNotHideAnothers(t *testing.T) {
	srv := eventstest.Start(t)
	publish := func(subject string) {
		t.Helper()
		if _, err := srv.JS.Publish(t.Context(), subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	w := newOldProbers(srv.Conn, zerolog.New(&out), func() []string { return []string{"eu", "us"} })
	now := time.Unix(1700000000, 0)
	look := func(after time.Duration) { now = now.Add(after); w.look(t.Context(), now) }
	look(0)
	publish("detour.probe.us.batch.p2")
	look(time.Minute) // us's batch is logged
	publish("detour.probe.eu.batch.p9")
	for range 5 {
		publish("detour.probe.us.batch.p2") // the busier region, on a subject logged already
	}
	look(time.Minute) // eu's batch is logged
	publish("detour.probe.eu.batch.p9")
	publish("detour.probe.us.batch.p2")
	look(time.Minute) // neither within the hour
	publish("detour.probe.eu.batch.p9")
	publish("detour.probe.us.batch.p2")
	look(time.Hour) // both again, an hour after they were logged
	var logged []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if _, s, ok := strings.Cut(l, `"subject":"`); ok {
			logged = append(logged, s[:strings.IndexByte(s, '"')])
		}
	}
	want := "detour.probe.us.batch.p2 detour.probe.eu.batch.p9 detour.probe.eu.batch.p9 detour.probe.us.batch.p2"
	if got := strings.Join(logged, " "); got != want {
		t.Errorf("logged %s\nwant %s", got, want)
	}
	look(time.Hour)
	if len(w.logged) != 0 {
		t.Errorf("%d subjects kept an hour after they were logged, want none", len(w.logged))
	}
}

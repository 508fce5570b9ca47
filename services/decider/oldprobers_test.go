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
		watchOldProbers(ctx, srv.JS, zerolog.New(&out), ticks)
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
// million of them within its bound. The watch reads one message a look, whatever their number,
// and logs at most one line a look.
func TestAFloodOfOldBatchSubjectsCostsOneLineALook(t *testing.T) {
	srv := eventstest.Start(t)
	var out lockedBuffer
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		watchOldProbers(ctx, srv.JS, zerolog.New(&out), ticks)
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

package dnsupdater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAnswersFollowAStateStreamDeletedAndCreatedAgain: an operator deletes STATE (or a server
// loses its store) and it is created again, its sequences starting over at 1. The answers
// follow the new stream's events, though the first of them has the sequence of an event the
// server folded from the old one; a new stream still empty leaves no endpoint down; and a
// restart from the last-known-good snapshot answers what the newest stream says, not what the
// ones before did.
func TestAnswersFollowAStateStreamDeletedAndCreatedAgain(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	recreate := func() {
		t.Helper()
		ctx := context.Background()
		if err := js.JS.DeleteStream(ctx, events.StreamState); err != nil {
			t.Fatal(err)
		}
		if err := events.EnsureStreams(ctx, js.JS, events.StreamOptions{Memory: true}); err != nil {
			t.Fatal(err)
		}
	}
	const west = "127-0-0-11_8081"

	// us-west down at sequence 1, then another event at 2.
	endpointDown(t, js, "shop", "us-west", west)
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the answer on us-east")

	// Created again, its first event (sequence 1) bringing us-west back.
	recreate()
	endpointUp(t, js, "shop", "us-west", west)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"),
		"the answer back on us-west, as the new stream's first event says")

	// Down again at sequence 2, then created again, empty: nothing is recorded down any more.
	endpointDown(t, js, "shop", "us-west", west)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the answer on us-east again")
	recreate()
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"),
		"the answer on us-west once the stream holding its down is gone")

	// The newest stream records us-east alone; the server stops, and starts again from its
	// snapshot while NATS is down: us-west's down, folded from the stream before, is not in it.
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		h.srv.projMu.Lock()
		defer h.srv.projMu.Unlock()
		_, ok := h.srv.proj.view.Subject(events.EndpointStateSubject("shop", "us-east", "127-0-0-12_8081"))
		return ok
	}, "the server to fold us-east's up")
	h.stop()
	js.Stop()
	h = startServer(t, js, cfg, dir)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"),
		"the answer on us-west after a restart from the snapshot")
}

// TestAServerStoppedWhileTheStateStreamIsCreatedAgainAnswersFromTheNewOne: STATE is deleted and
// created again while a DNS server is stopped. Started again, it serves its snapshot, of the old
// stream, until it reads the new one, and then answers what the new one says, though its events
// have sequences the snapshot's events had.
func TestAServerStoppedWhileTheStateStreamIsCreatedAgainAnswersFromTheNewOne(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	const west = "127-0-0-11_8081"
	endpointDown(t, js, "shop", "us-west", west)
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the answer on us-east")
	h.stop()

	ctx := context.Background()
	if err := js.JS.DeleteStream(ctx, events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, js.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	endpointUp(t, js, "shop", "us-west", west)
	h = startServer(t, js, cfg, dir)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"),
		"the answer on us-west, as the new stream's first event says")
}

// TestAServerWithAnOldSnapshotStoppedWhileTheStateStreamIsCreatedAgainAnswersFromTheNewOne: a
// snapshot written before snapshots recorded when STATE was created says nothing of which
// stream its events came from. STATE is deleted and created again while the server is stopped,
// and the new stream is as long as the old one, its events at the old ones' sequences. Started
// from that snapshot the server answers what the new stream says, not what the snapshot did.
func TestAServerWithAnOldSnapshotStoppedWhileTheStateStreamIsCreatedAgainAnswersFromTheNewOne(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	const west, east = "127-0-0-11_8081", "127-0-0-12_8081"
	endpointDown(t, js, "shop", "us-west", west)
	endpointUp(t, js, "shop", "us-east", east)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "the answer on us-east")
	h.stop()
	writeOldSnapshot(t, dir)

	ctx := context.Background()
	if err := js.JS.DeleteStream(ctx, events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, js.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	endpointUp(t, js, "shop", "us-west", west)
	endpointUp(t, js, "shop", "us-east", east)
	h = startServer(t, js, cfg, dir)
	eventstest.Eventually(t, 5*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.11"),
		"the answer on us-west, as the new stream's first event says")
}

// writeOldSnapshot rewrites the snapshot in dir as a version that did not record when STATE was
// created wrote it: without state_created, in its base or its journal.
func writeOldSnapshot(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{snapshotFile, journalFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		for line := range bytes.Lines(b) {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, ok := m["state_created"]; !ok {
				t.Fatalf("%s: no state_created to take out: %s", name, line)
			}
			delete(m, "state_created")
			enc, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(append(out, enc...), '\n')
		}
		if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

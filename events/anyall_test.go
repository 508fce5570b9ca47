package events_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AnyAll reads every message of a subject, oldest first, past the 256 one direct get returns,
// and skips those of the stream's other subjects: 515 events of one drill among another's are
// read whole.
func TestAnyAllReadsEveryMessageOfASubjectAcrossBatches(t *testing.T) {
	ns := eventstest.Start(t)
	var want []uint64
	for i := range 600 {
		subject := events.DrillSubject("d1")
		if i%7 == 3 {
			subject = events.DrillSubject("d2")
		}
		e, err := events.New(events.TypeDrillRolledBack, "test", time.Now(), events.DrillRolledBack{By: "test", Reason: "requested"})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(t.Context(), ns.JS, subject, e)
		if err != nil {
			t.Fatal(err)
		}
		if subject == events.DrillSubject("d1") {
			want = append(want, ack.Sequence)
		}
	}
	// As the API and detour config history read, within a bound of their own: without one, each
	// read of a batch gives up after a second.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := events.AnyAll(ctx, ns.JS, events.StreamDrills, events.DrillSubject("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if m.Sequence != want[i] || m.Subject != events.DrillSubject("d1") {
			t.Fatalf("message %d: %s at %d, want %s at %d", i, m.Subject, m.Sequence, events.DrillSubject("d1"), want[i])
		}
	}
	if none, err := events.AnyAll(ctx, ns.JS, events.StreamDrills, events.DrillSubject("none")); err != nil || len(none) != 0 {
		t.Errorf("a subject without messages: %d messages, %v; want none", len(none), err)
	}
}

// A history larger than a NATS server lets one connection fall behind by (max_pending, 64 MiB),
// 75 messages of 900 KiB (CONFIG keeps 100 versions of up to 128 MiB in all), read through a link
// 100 ms away: AnyAll reads every one, in order, and the server keeps the reader's connection.
// It asked for the whole at once: the server sent up to 64 MiB to each copy of the read and cut
// the reader off as a slow consumer (here a reconnect, and 4.7 s; through a link 300 ms away,
// 299 MB sent, two reconnects, and the read gave up after 10 s with nothing).
func TestAnyAllReadsAHistoryLargerThanAConnectionsPendingLimitWithoutBeingCutOff(t *testing.T) {
	ns := eventstest.Start(t)
	if _, err := ns.JS.CreateStream(t.Context(), jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big.>"},
		AllowDirect: true, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 900<<10)
	for range 75 {
		if _, err := ns.JS.Publish(t.Context(), "big.a", body); err != nil {
			t.Fatal(err)
		}
	}
	link := eventstest.NewSlowLink(t, ns.URL)
	link.Delay(100*time.Millisecond, 0)
	nc, js := eventstest.ConnectJS(t, link.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	began := time.Now()
	got, err := events.AnyAll(ctx, js, "BIG", "big.a")
	took := time.Since(began)
	if err != nil {
		t.Fatalf("after %s: %v", took, err)
	}
	t.Logf("75 messages of 900 KiB through a link 100 ms away: %s", took)
	if len(got) != 75 {
		t.Fatalf("%d messages, want 75", len(got))
	}
	for i, m := range got {
		if m.Sequence != uint64(i+1) || len(m.Data) != len(body) {
			t.Fatalf("message %d: seq %d of %d bytes, want seq %d of %d", i, m.Sequence, len(m.Data), i+1, len(body))
		}
	}
	if n := nc.Stats().Reconnects; n > 0 || nc.Status() != nats.CONNECTED {
		t.Errorf("the reader's connection: %d reconnects, %s; want none, connected", n, nc.Status())
	}
}

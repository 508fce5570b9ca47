package events_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAnyLastOfLeavesOutNoSubjectAReplicaBehindHolds: a decider reads the last events of a new
// version's subjects (AnyLastOf) on a node of four that holds no replica of STATE, while one
// replica is cut from the leader. Override x was set before the cut and set again after it; the
// other subjects' events are large enough that their last messages take two pages. A first page
// answered by an up-to-date replica stopped before x's new event, and a second answered by the
// replica behind, which holds x's last event before the one where the first page stopped: x was
// in neither, left out as if it held nothing (a new endpoint's force down ignored), where either
// replica alone gives one of x's events.
func TestAnyLastOfLeavesOutNoSubjectAReplicaBehindHolds(t *testing.T) {
	t.Parallel()
	const fillers, reads = 8, 20
	c := eventstest.StartCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, lagging, _, outside := c.ReplicasOutside(t, createT(t, c, 0))
	_, js := eventstest.ConnectJS(t, c.URLs[outside])
	publish := func(subject, reason string) {
		t.Helper()
		e, err := events.New(events.TypeOverrideSet, "test", time.Now(), events.Override{Action: events.ActionForceDown, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		eventstest.Eventually(t, 10*time.Second, func() bool {
			_, err = events.Publish(ctx, js, subject, e)
			return !errors.Is(err, jetstream.ErrNoStreamResponse)
		}, "T answering a publish")
		if err != nil {
			t.Fatal(err)
		}
	}
	subjects := []string{"t.x"}
	publish("t.x", "before the cut")
	pad := strings.Repeat("p", 100<<10) // 8 of them are two pages of AnyLastOf's 512 KiB
	for i := range fillers {
		subjects = append(subjects, fmt.Sprintf("t.s%d", i))
		publish(subjects[len(subjects)-1], pad)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(lagging, "T") == 1+fillers }, "n%d holding every message", lagging)
	c.DirectGets(t, "T")
	c.Cut(leader, lagging)
	publish("t.x", "after the cut")

	for i := range reads {
		got := map[string]uint64{}
		err := events.AnyLastOf(ctx, js, "T", subjects, func(subject string, seq uint64, _ events.Envelope) { got[subject] = seq })
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if _, ok := got["t.x"]; !ok || len(got) != len(subjects) {
			t.Fatalf("read %d gave %v: %d of %d subjects, t.x left out, where each replica holds one of its events", i, got, len(got), len(subjects))
		}
	}
}

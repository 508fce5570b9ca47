package events_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestABridgeSaysCaughtUpOnlyAtTheLastMessageTheLeaderHeldWhileAReplicaLags: followers (alert
// senders reading ALERTS and STATE, a decider reading STATE) start with no consumer to be had,
// on a node of four that holds no replica of their stream, while one replica is cut from the
// leader: it holds 5 of the 10 messages stored, and still answers direct gets. A bridge whose
// batch that replica answered was told CaughtUp at message 5, the replica having nothing beyond
// it: a handler then takes messages 6 to 10, stored before it started, as new (an alert sender
// alerts them as appended after its start, whatever their age). The stream's leader said at the
// open that it held 10: CaughtUp waits for message 10.
func TestABridgeSaysCaughtUpOnlyAtTheLastMessageTheLeaderHeldWhileAReplicaLags(t *testing.T) {
	t.Parallel()
	const followers, before, behind = 12, 5, 5
	c := eventstest.StartCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := createT(t, c, 1)
	leader, lagging, third, outside := c.ReplicasOutside(t, st)
	_, js := connectAs(t, c.URLs[outside], "t")
	// A stream just created may have no leader to answer yet (no responders: nothing stored),
	// so a publish is tried again on that answer alone.
	publish := func() {
		t.Helper()
		var err error
		eventstest.Eventually(t, 10*time.Second, func() bool {
			_, err = js.Publish(ctx, "t.a", nil)
			return !errors.Is(err, jetstream.ErrNoStreamResponse)
		}, "T answering a publish")
		if err != nil {
			t.Fatal(err)
		}
	}
	for range before {
		publish()
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(lagging, "T") == before }, "n%d holding %d messages", lagging, before)
	c.DirectGets(t, "T")
	// The one consumer T allows: no follower can create its own, as while the meta leader is
	// replaced, and each reads by direct gets.
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	c.Cut(leader, lagging)
	for range behind {
		publish()
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(third, "T") == before+behind }, "n%d holding %d messages", third, before+behind)
	if n := c.Held(lagging, "T"); n != before {
		t.Fatalf("n%d, cut from the leader, holds %d messages, want %d", lagging, n, before)
	}

	var mu sync.Mutex
	caughtAt := map[int]uint64{}
	for i := range followers {
		_, js := connectAs(t, c.URLs[outside], fmt.Sprintf("f%d", i))
		var last uint64
		f := events.Follower{JS: js, Stream: "T", Log: zerolog.Nop(), Bridge: events.BridgeNext,
			Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}, DeliverPolicy: jetstream.DeliverAllPolicy}}
		done := follow(ctx, &f, func(d events.Delivery) {
			if d.Msg != nil {
				last = d.Seq
			}
			if d.CaughtUp {
				mu.Lock()
				caughtAt[i] = last
				mu.Unlock()
			}
		})
		defer func() { <-done }()
	}
	defer cancel()
	eventstest.Eventually(t, 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(caughtAt) == followers },
		"%d followers caught up", followers)
	mu.Lock()
	defer mu.Unlock()
	for i, seq := range caughtAt {
		if seq != before+behind {
			t.Errorf("follower %d told it caught up at message %d of the %d the stream held when it started", i, seq, before+behind)
		}
	}
}

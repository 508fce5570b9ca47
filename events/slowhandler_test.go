package events_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAFollowerWhoseHandlerHoldsItPastTheHeartbeatKeepsItsConsumer: a decider busy folding holds
// its follower's handler for longer than two heartbeats, with more than a pull's 500 messages
// waiting. nats.go checks for a missed heartbeat only while the follower waits in Next,
// so the follower keeps its one consumer: it logs no loss and delivers every message once, in
// order. (Under a starved CPU the check may still fire while it waits, as it should.)
func TestAFollowerWhoseHandlerHoldsItPastTheHeartbeatKeepsItsConsumer(t *testing.T) {
	t.Parallel()
	srv := eventstest.Start(t)
	if _, err := srv.JS.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"},
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := range n {
		if _, err := srv.JS.Publish(context.Background(), fmt.Sprintf("t.%d", i%7), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs eventstest.Logs
	f := events.Follower{JS: srv.JS, Stream: "T", Log: zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))),
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}}}
	var mu sync.Mutex
	var seqs []uint64
	done := follow(ctx, &f, func(d events.Delivery) {
		if d.Msg == nil {
			return
		}
		// A fold that holds the loop for three heartbeats, at the first message and half way
		// through the pull's batch.
		if d.Seq == 1 || d.Seq == 300 {
			<-time.After(3 * events.FollowHeartbeat)
		}
		mu.Lock()
		seqs = append(seqs, d.Seq)
		mu.Unlock()
	})
	got := func() []uint64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(seqs) }
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(got()) >= n }, "the %d stored messages", n)
	cancel()
	<-done
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if s := got(); !slices.Equal(s, want) {
		t.Errorf("delivered %d messages, want 1..%d once each in order", len(s), n)
	}
	if c := logs.Count("stream unreachable; retrying"); c != 0 {
		t.Errorf("the follower replaced its consumer %d times while its handler held it, want none", c)
	}
}

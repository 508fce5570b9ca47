package events_test

import (
	"context"
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

// TestAStreamDeletedAndCreatedAgainIsNotBlamedOnAnotherProcessOfTheUser: deleting a stream
// deletes its consumers, the follower's named one too (a user's own, events.ConsumerName). That
// is a stream created again, which the follower reads from its first message, not a second
// process connected as the same NATS user: SharedUserMessage, at error level, sends an operator
// who recreated STATE hunting for a duplicated credential in every role.
//
// The follower finds the new stream before anything is published to it, as it does whenever
// EnsureStreams creates the rest of the streams slower than its half-second retry: it says so on
// a delivery without a message (Delivery.Recreated), once, and the new stream's first message
// is not told again.
func TestAStreamDeletedAndCreatedAgainIsNotBlamedOnAnotherProcessOfTheUser(t *testing.T) {
	t.Parallel()
	srv := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, js := connectAs(t, srv.URL, "dns-1")
	publish := func() {
		t.Helper()
		if _, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "w1"), mustEnvelope(t)); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	var logs eventstest.Logs
	var mu sync.Mutex
	var seqs []uint64
	var recreated []bool
	f := events.Follower{JS: js, Stream: events.StreamState, Log: zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))),
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectState}}, Bridge: events.BridgeNext}
	done := follow(ctx, &f, func(d events.Delivery) {
		if d.Msg != nil || d.Recreated {
			mu.Lock()
			seqs, recreated = append(seqs, d.Seq), append(recreated, d.Recreated)
			mu.Unlock()
		}
	})
	defer func() { cancel(); <-done }()
	got := func() []uint64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(seqs) }
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(got()) == 1 }, "the first message")
	if err := srv.JS.DeleteStream(ctx, events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(got()) == 2 }, "the news of the new stream")
	publish()
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(got()) == 3 }, "the first message of the new stream")
	mu.Lock()
	if !slices.Equal(seqs, []uint64{1, 0, 1}) || !slices.Equal(recreated, []bool{false, true, false}) {
		t.Errorf("delivered %v recreated %v, want the new stream told once without a message (0), then its 1", seqs, recreated)
	}
	mu.Unlock()
	if n := logs.Count(events.SharedUserMessage); n != 0 {
		t.Errorf("blamed another process of the user for the consumer the stream's deletion took:\n%s", logs.String())
	}
}

func mustEnvelope(t *testing.T) events.Envelope {
	t.Helper()
	e, err := events.New(events.TypeEndpointUp, "test", time.Now(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

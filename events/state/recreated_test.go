package state_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAViewFollowingSTATEStartsOverWhenTheStreamIsCreatedAgain: an operator deletes STATE (or a
// server loses its store) and it is created again, its sequences starting over at 1. A view fed
// by a follower holds the new stream's statuses, not the old one's, whether the new stream is
// still empty or already holds events whose sequences the old stream had used; and the follower
// says so on one delivery alone.
func TestAViewFollowingSTATEStartsOverWhenTheStreamIsCreatedAgain(t *testing.T) {
	srv := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(edge, typ string, to events.Status) {
		t.Helper()
		e, err := events.New(typ, "test", time.Now(), events.Transition{Edge: edge, To: to, Reason: "test"})
		if err == nil {
			_, err = events.Publish(ctx, srv.JS, events.EdgeStateSubject(edge), e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	recreate := func() {
		t.Helper()
		if err := srv.JS.DeleteStream(ctx, events.StreamState); err != nil {
			t.Fatal(err)
		}
		if err := events.EnsureStreams(ctx, srv.JS, events.StreamOptions{Memory: true}); err != nil {
			t.Fatal(err)
		}
	}
	publish("edge-west", events.TypeEdgeDown, events.StatusDown)
	publish("edge-east", events.TypeEdgeDown, events.StatusDown)

	var mu sync.Mutex
	v, recreated := state.NewView(), 0
	f := events.Follower{JS: srv.JS, Stream: events.StreamState, Log: zerolog.New(zerolog.NewTestWriter(t)),
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectState}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(d events.Delivery) {
			mu.Lock()
			defer mu.Unlock()
			if d.Recreated {
				recreated++
				v.Reset()
			}
			if d.Msg == nil {
				return
			}
			e, err := events.Decode(d.Data)
			if err == nil {
				_, err = v.Apply(d.Subject, d.Seq, e)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}()
	defer func() { cancel(); <-done }()
	edges := func() (west, east events.Status, n int) {
		mu.Lock()
		defer mu.Unlock()
		return v.Edge("edge-west"), v.Edge("edge-east"), recreated
	}
	var west, east events.Status
	var n int
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west, east, n = edges()
		return west == events.StatusDown && east == events.StatusDown && n == 0
	}, "both edges down, as the first stream says")

	// Created again, empty: nothing is recorded any more.
	recreate()
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west, east, n = edges()
		return west == events.StatusUnknown && east == events.StatusUnknown
	}, "both edges unknown once the stream is created again, empty")

	// Its first event has the sequence of the old stream's first.
	publish("edge-west", events.TypeEdgeUp, events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west, east, n = edges()
		return west == events.StatusUp && east == events.StatusUnknown
	}, "edge-west up, as the new stream's first event says")
	if n != 1 {
		t.Errorf("%d deliveries said the stream was created again, want 1", n)
	}

	// Created again and written at once: the new stream holds events at sequences the view
	// applied already, most likely before the follower finds it.
	recreate()
	publish("edge-east", events.TypeEdgeUp, events.StatusUp)
	publish("edge-west", events.TypeEdgeDown, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west, east, n = edges()
		return west == events.StatusDown && east == events.StatusUp
	}, "edge-west down and edge-east up, as the newest stream says: west %s, east %s", &west, &east)
	if n != 2 {
		t.Errorf("%d deliveries said the stream was created again, want 2", n)
	}
}

package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAppendRefusesAWriterThatReadAnOlderSequence(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	subj := events.EndpointStateSubject("shop", "west", "a")
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down, _ := events.New(events.TypeEndpointDown, "test", at, events.Transition{To: events.StatusDown})
	up, _ := events.New(events.TypeEndpointUp, "test", at, events.Transition{To: events.StatusUp})

	ack, err := events.Append(ctx, srv.JS, subj, down, 0)
	if err != nil {
		t.Fatalf("first append on an empty subject: %v", err)
	}
	if _, err := events.Append(ctx, srv.JS, subj, up, 0); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("second writer that also read an empty subject: got %v, want ErrConflict", err)
	}
	if _, err := events.Append(ctx, srv.JS, subj, up, ack.Sequence); err != nil {
		t.Fatalf("append after re-reading seq %d: %v", ack.Sequence, err)
	}
	last, seq, ok, err := events.Last(ctx, srv.Stream(t, events.StreamState), subj)
	if err != nil || !ok || last.ID != up.ID || seq != ack.Sequence+1 {
		t.Fatalf("last = %s at %d (ok %v, err %v), want %s at %d", last.ID, seq, ok, err, up.ID, ack.Sequence+1)
	}
}

func TestPublishingTheSameEventTwiceStoresItOnce(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	e, _ := events.Derived(events.TypePoolDown, "test", "cause-1", "shop/west", time.Now(), events.Transition{})
	subj := events.PoolStateSubject("shop", "west")
	a1, err := events.Publish(ctx, srv.JS, subj, e)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := events.Publish(ctx, srv.JS, subj, e)
	if err != nil {
		t.Fatal(err)
	}
	if !a2.Duplicate || a1.Sequence != a2.Sequence {
		t.Fatalf("second publish: duplicate=%v seq=%d, want a duplicate of seq %d", a2.Duplicate, a2.Sequence, a1.Sequence)
	}
}

func TestAnAppendWhoseIDAMessageOfAnotherSubjectHoldsIsPreemptedAndADuplicateOnItsSubjectIsNot(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	st := srv.Stream(t, events.StreamState)
	e, _ := events.Derived(events.TypePoolDown, "decider-1", "cause-1", "shop/west", time.Now(), events.Transition{})
	pool := events.PoolStateSubject("shop", "west")
	forged := e
	forged.Source = "controller-1"
	if _, err := events.Publish(ctx, srv.JS, events.EdgeStateSubject("edge-west"), forged); err != nil {
		t.Fatal(err)
	}
	ack, err := events.Append(ctx, srv.JS, pool, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Preempted(ctx, st, pool, e, ack); !errors.Is(err, events.ErrPreempted) || !errors.Is(err, events.ErrConflict) {
		t.Errorf("an append whose id the edge's message holds: got %v, want ErrPreempted, an ErrConflict", err)
	}
	if _, _, ok, err := events.Last(ctx, st, pool); ok || err != nil {
		t.Fatalf("the pool holds an event (err %v): the append was not stored, JetStream took it as a duplicate", err)
	}

	e2, _ := events.Derived(events.TypePoolDown, "decider-1", "cause-2", "shop/west", time.Now(), events.Transition{})
	first, err := events.Append(ctx, srv.JS, pool, e2, 0)
	if err != nil {
		t.Fatal(err)
	}
	retried, err := events.Publish(ctx, srv.JS, pool, e2)
	if err != nil || !retried.Duplicate {
		t.Fatalf("the same event again: %+v, %v; want a duplicate", retried, err)
	}
	for _, ack := range []*jetstream.PubAck{first, retried} {
		if err := events.Preempted(ctx, st, pool, e2, ack); err != nil {
			t.Errorf("an append stored on its subject (duplicate %v): %v", ack.Duplicate, err)
		}
	}
}

func TestDecodeRejectsWhatIsNotADetourEvent(t *testing.T) {
	for _, in := range []string{``, `garbage`, `{}`, `{"type":"x.y","id":"1","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"type":"detour.pool.up.v1","time":"2026-01-01T00:00:00Z","data":{}}`} {
		if _, err := events.Decode([]byte(in)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestAddressToken(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.11:8081":   "127-0-0-11_8081",
		"[2001:db8::1]:443": "2001-db8--1_443",
		"10.0.0.1":          "10-0-0-1",
	} {
		if got := events.AddressToken(in); got != want || !events.ValidToken(got) {
			t.Errorf("AddressToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecodeNeverPanics(f *testing.F) {
	e, _ := events.New(events.TypeEndpointDown, "fuzz", time.Now(), events.Transition{To: events.StatusDown})
	f.Add(e.Encode())
	f.Add([]byte(`{"type":"detour.x.v1","id":"1","time":"2026-01-01T00:00:00Z","data":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := events.Decode(b)
		if err != nil {
			return
		}
		var tr events.Transition
		_ = e.Payload(&tr)
		if _, err := events.Decode(e.Encode()); err != nil {
			t.Fatalf("an accepted envelope does not survive its own encoding: %v", err)
		}
	})
}

func TestAppendsGoOnAfterPublishesTheServerNeverAnswered(t *testing.T) {
	t.Parallel()
	srv := eventstest.Start(t)
	ctx := context.Background()
	js, err := events.NewJetStream(srv.Conn)
	if err != nil {
		t.Fatal(err)
	}
	// Publishes a stream's leader took just before it died are never answered. A stream that
	// acknowledges nothing stands for that leader: the client fills with publishes awaiting an
	// answer, as many as it lets wait.
	if _, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "LOST", Subjects: []string{"lost.>"}, NoAck: true,
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := js.PublishAsync("lost.x", []byte("x")); err != nil {
			break
		}
		if i == 100000 {
			t.Fatal("the client let 100,000 publishes wait for an answer")
		}
	}
	// The writer goes on appending once those are given up on.
	e, _ := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{To: events.StatusDown})
	subj := events.EndpointStateSubject("shop", "west", "a")
	eventstest.Eventually(t, 3*events.AsyncAckTimeout, func() bool {
		f, err := events.AppendAsync(js, subj, e, 0)
		if err != nil {
			return false
		}
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err = events.AppendResult(actx, f, e, 0)
		return err == nil
	}, "an append stored")
}

// An acknowledgement that has come is the append's outcome even when the wait for it is over:
// a writer collecting what came without waiting (an ended context) must not count a stored
// append as failed and send it again.
func TestAppendResultReturnsAnAcknowledgementThatCameWhateverTheContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	e, _ := events.New(events.TypeEndpointDown, "test", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), events.Transition{To: events.StatusDown})
	msg := &nats.Msg{Subject: events.EndpointStateSubject("shop", "west", "a")}
	for i := range uint64(100) {
		ack, err := events.AppendResult(ended, stored{msg: msg, ack: &jetstream.PubAck{Stream: "STATE", Sequence: i + 1}}, e, i)
		if err != nil || ack.Sequence != i+1 {
			t.Fatalf("attempt %d: acknowledged at seq %d, but AppendResult with an ended context returned %v, %v", i, i+1, ack, err)
		}
	}
}

// stored is the future of an append whose acknowledgement has come.
type stored struct {
	jetstream.PubAckFuture
	msg *nats.Msg
	ack *jetstream.PubAck
}

func (s stored) Ok() <-chan *jetstream.PubAck {
	c := make(chan *jetstream.PubAck, 1)
	c <- s.ack
	return c
}

func (s stored) Err() <-chan error { return nil }
func (s stored) Msg() *nats.Msg    { return s.msg }

// A refusal that has come is the outcome too: a conflict read as the ended wait would be sent
// again unchanged on the next tick, and refused again, instead of the subject being re-read.
func TestAppendResultReturnsARefusalThatCameWhateverTheContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	e, _ := events.New(events.TypeEndpointDown, "test", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), events.Transition{To: events.StatusDown})
	msg := &nats.Msg{Subject: events.EndpointStateSubject("shop", "west", "a")}
	wrongLast := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence"}
	for i := range uint64(100) {
		if _, err := events.AppendResult(ended, refused{msg: msg, err: wrongLast}, e, i); !errors.Is(err, events.ErrConflict) {
			t.Fatalf("attempt %d: refused for its expected sequence, but AppendResult with an ended context returned %v, want a conflict", i, err)
		}
	}
}

// refused is the future of an append whose refusal has come.
type refused struct {
	jetstream.PubAckFuture
	msg *nats.Msg
	err error
}

func (r refused) Ok() <-chan *jetstream.PubAck { return nil }
func (r refused) Err() <-chan error {
	c := make(chan error, 1)
	c <- r.err
	return c
}
func (r refused) Msg() *nats.Msg { return r.msg }

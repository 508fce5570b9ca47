package decider_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// racingWriter is JetStream as the decider sees it, with another writer that appends to subject
// just before the decider's first asynchronous append of a down transition there: an up
// transition of its own, dated skew after the decider's, so that the decider's append is refused
// for its expected sequence while the appends sent after it are already on their way.
type racingWriter struct {
	jetstream.JetStream
	t       *testing.T
	subject string
	skew    time.Duration
	once    sync.Once
}

func (w *racingWriter) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if e, err := events.Decode(m.Data); err == nil && m.Subject == w.subject && e.Type == events.TypeEndpointDown {
		w.once.Do(func() {
			forged, err := events.New(events.TypeEndpointUp, "someone-else", e.Time.Add(w.skew),
				events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusUp, Reason: "another writer"})
			if err != nil {
				w.t.Error(err)
				return
			}
			if _, err := w.JetStream.PublishMsg(context.Background(), &nats.Msg{Subject: w.subject, Data: forged.Encode()}); err != nil {
				w.t.Error(err)
			}
		})
	}
	return w.JetStream.PublishMsgAsync(m, opts...)
}

// w1FailsWhileAnotherWriterRaces runs a decider whose endpoint shop/west/w1 is up, then sends
// the three failures that take it down while another writer stores an event on its subject just
// before the decider's, dated skew after it.
func w1FailsWhileAnotherWriterRaces(t *testing.T, skew time.Duration) (*eventstest.Server, *replica) {
	t.Helper()
	srv := eventstest.Start(t)
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	subject := events.EndpointStateSubject("shop", "west", "w1")
	r := start(t, &racingWriter{JetStream: srv.JS, t: t, subject: subject, skew: skew}, eventstest.Config(t, shopYAML), "decider/a")
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	return srv, r
}

func TestAnEndpointTransitionRefusedWhileItsPoolsTransitionIsInFlightIsDecidedAgain(t *testing.T) {
	srv, r := w1FailsWhileAnotherWriterRaces(t, -time.Millisecond)
	// The other writer's event comes first and the decider's down is refused; its pool's down,
	// sent right after it, is stored; the decider re-reads the endpoint and appends its down again
	// after the other writer's event (which is older than the failure that decided it).
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up",
		"endpoint.shop.west.w1:up", "pool.shop.west:down", "endpoint.shop.west.w1:down")
	if c := r.stats.Conflicts.Load(); c != 1 {
		t.Errorf("%d conflicts counted, want 1", c)
	}
}

func TestAnEndpointTransitionRefusedForANewerEventIsReassertedAndItsPoolFollows(t *testing.T) {
	srv, r := w1FailsWhileAnotherWriterRaces(t, time.Millisecond)
	// The other writer's up is newer than the failure that decided the down: the down is history
	// already, and the pool's down, stored on it, is followed by the up its endpoint's recorded
	// status implies. The probes still say down: once STATE has contradicted them for a second,
	// the decider re-asserts its view.
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up",
		"endpoint.shop.west.w1:up", "pool.shop.west:down", "pool.shop.west:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down")
	if n := r.stats.Reasserted.Load(); n != 1 {
		t.Errorf("%d re-assertions, want 1", n)
	}
}

// refusedPool is JetStream where another writer appends to pool just before the decider's first
// asynchronous append of a down there: a down and an up of its own, dated just before the
// decider's down, which the decider has not read (another replica's flap of the pool, reaching
// STATE ahead of this one's reader). The decider's down is refused for its expected sequence, and the refusal
// is held until the decider waits for it (events.AppendResult reads the future's message first)
// or sends its next append, whichever comes first.
type refusedPool struct {
	jetstream.JetStream
	t    *testing.T
	pool string
	mu   sync.Mutex
	done bool
	held *heldAnswer
}

func (w *refusedPool) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	w.mu.Lock()
	held := w.held
	w.held = nil
	e, err := events.Decode(m.Data)
	refuse := err == nil && !w.done && m.Subject == w.pool && e.Type == events.TypePoolDown
	w.done = w.done || refuse
	w.mu.Unlock()
	if held != nil {
		held.release()
	}
	if !refuse {
		return w.JetStream.PublishMsgAsync(m, opts...)
	}
	for i, flap := range []struct {
		typ      string
		from, to events.Status
	}{{events.TypePoolDown, events.StatusUp, events.StatusDown}, {events.TypePoolUp, events.StatusDown, events.StatusUp}} {
		other, err := events.New(flap.typ, "decider/b", e.Time.Add(time.Duration(i-2)*time.Millisecond),
			events.Transition{App: "shop", Pool: "west", From: flap.from, To: flap.to, Reason: "another replica"})
		if err != nil {
			return nil, err
		}
		if _, err := w.JetStream.PublishMsg(context.Background(), &nats.Msg{Subject: w.pool, Data: other.Encode()}); err != nil {
			return nil, err
		}
	}
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	h := &heldAnswer{PubAckFuture: f, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	w.mu.Lock()
	w.held = h
	w.mu.Unlock()
	return h, nil
}

// heldAnswer is an append's future whose answer is passed on once released.
type heldAnswer struct {
	jetstream.PubAckFuture
	once sync.Once
	ok   chan *jetstream.PubAck
	err  chan error
}

func (f *heldAnswer) release() {
	f.once.Do(func() {
		go func() {
			select {
			case ack := <-f.PubAckFuture.Ok():
				f.ok <- ack
			case err := <-f.PubAckFuture.Err():
				f.err <- err
			}
		}()
	})
}

func (f *heldAnswer) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *heldAnswer) Err() <-chan error            { return f.err }
func (f *heldAnswer) Msg() *nats.Msg {
	f.release()
	return f.PubAckFuture.Msg()
}

// w1 goes down and its pool's down is refused: another replica appended to the pool meanwhile.
// Before the refusal is handled, w1 recovers. The pool is decided again on the status it was
// built on, w1's down, before w1's up is appended, as it would be had the decider waited for
// each acknowledgement: STATE never shows the pool up while its one endpoint is down, waiting
// for w1 to come back.
func TestAPoolTransitionRefusedIsDecidedAgainBeforeItsEndpointsNextTransition(t *testing.T) {
	srv := eventstest.Start(t)
	w := &refusedPool{JetStream: srv.JS, t: t, pool: events.PoolStateSubject("shop", "west")}
	start(t, w, eventstest.Config(t, shopYAML), "decider/a")
	p := w1UpThenFailing(t, srv)
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down",
		"pool.shop.west:down", "pool.shop.west:up", // the other replica's
		"pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
}

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

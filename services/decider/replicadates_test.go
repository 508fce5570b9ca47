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

// laterCopy is JetStream where another replica, which dated a change later than this one, stored
// its copy of one append first: before the nth append to subject (counting from 1) is sent, the
// same event (same id, so the same change) from decider/other, dated later, is stored on it. The
// append is then sent, and refused as a conflict: this replica re-reads the subject and finds the
// other's copy. Two replicas date one change differently when one folded its result as heard on
// the wire (dated when heard) and the other as PROBES stored it.
type laterCopy struct {
	jetstream.JetStream
	subject string
	nth     int
	later   time.Duration
	mu      sync.Mutex
	n       int
}

func (w *laterCopy) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if m.Subject == w.subject {
		w.mu.Lock()
		w.n++
		n := w.n
		w.mu.Unlock()
		if n == w.nth {
			e, err := events.Decode(m.Data)
			if err != nil {
				return nil, err
			}
			e.Source, e.Time = "decider/other", e.Time.Add(w.later)
			copied := nats.NewMsg(m.Subject)
			copied.Data = e.Encode()
			if _, err := w.JetStream.PublishMsg(context.Background(), copied, opts...); err != nil {
				return nil, err
			}
		}
	}
	return w.JetStream.PublishMsgAsync(m, opts...)
}

// atOnce is JetStream answering each append as it is sent, so that the decider often has the
// answer before STATE delivers the event stored (as when its reader is behind).
type atOnce struct{ jetstream.JetStream }

func (w atOnce) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	ack, err := w.JetStream.PublishMsg(context.Background(), m, opts...)
	f := &outcome{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	if err != nil {
		f.err <- err
	} else {
		f.ok <- ack
	}
	return f, nil
}

// outcome is an append's future whose answer or failure has come.
type outcome struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *outcome) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *outcome) Err() <-chan error            { return f.err }
func (f *outcome) Msg() *nats.Msg               { return f.msg }

// A pool's transition another replica stored first, dated later than the endpoint transition
// that follows it, does not keep the pool's next transition from being recorded: STATE never
// shows the pool up while its only endpoint is down (no failover), nor down while it is up.
// Replicas date one change differently (one heard its result on the wire, the other read it from
// PROBES), while both append the same event. The decider sends the pool's transition behind the
// endpoint's, before it knows where STATE stores that one: it is decided again once it does,
// whether the answer or STATE's delivery tells it first.
func TestAPoolTransitionAnotherReplicaDatedLaterIsFollowedByTheNextOne(t *testing.T) {
	const west = "detour.state.pool.shop.west"
	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	t.Run("pool up, then its endpoint down", func(t *testing.T) {
		srv := eventstest.Start(t)
		start(t, &laterCopy{JetStream: atOnce{srv.JS}, subject: west, nth: 1, later: 10 * time.Second}, eventstest.Config(t, shopYAML), "decider/a")
		w1UpThenFailing(t, srv)
		waitHistory(t, srv, append(up, down...)...)
	})
	t.Run("pool down, then its endpoint up", func(t *testing.T) {
		srv := eventstest.Start(t)
		start(t, &laterCopy{JetStream: atOnce{srv.JS}, subject: west, nth: 2, later: 10 * time.Second}, eventstest.Config(t, shopYAML), "decider/a")
		p := w1UpThenFailing(t, srv)
		waitHistory(t, srv, append(up, down...)...)
		p.send("shop", "west", "w1", true)
		p.send("shop", "west", "w1", true)
		waitHistory(t, srv, append(append(up, down...), up...)...)
	})
}

// The same for an endpoint: its transition another replica stored first, dated later than the
// results that follow, does not keep its next transition from being recorded on the result that
// completes it. The decider may learn of the other's copy from its answer (a conflict, then a
// re-read) or from STATE delivering it first.
func TestAnEndpointTransitionAnotherReplicaDatedLaterIsFollowedByTheNextOne(t *testing.T) {
	const w1 = "detour.state.endpoint.shop.west.w1"
	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	for _, answer := range []struct {
		name string
		wrap func(jetstream.JetStream) jetstream.JetStream
	}{
		{"answered as sent", func(js jetstream.JetStream) jetstream.JetStream { return atOnce{js} }},
		{"answered when stored", func(js jetstream.JetStream) jetstream.JetStream { return js }},
	} {
		t.Run(answer.name+": endpoint up, then down", func(t *testing.T) {
			srv := eventstest.Start(t)
			start(t, &laterCopy{JetStream: answer.wrap(srv.JS), subject: w1, nth: 1, later: 10 * time.Second}, eventstest.Config(t, shopYAML), "decider/a")
			w1UpThenFailing(t, srv)
			waitHistory(t, srv, append(up, down...)...)
		})
		t.Run(answer.name+": endpoint down, then up", func(t *testing.T) {
			srv := eventstest.Start(t)
			start(t, &laterCopy{JetStream: answer.wrap(srv.JS), subject: w1, nth: 2, later: 10 * time.Second}, eventstest.Config(t, shopYAML), "decider/a")
			p := w1UpThenFailing(t, srv)
			waitHistory(t, srv, append(up, down...)...)
			p.send("shop", "west", "w1", true)
			p.send("shop", "west", "w1", true)
			waitHistory(t, srv, append(append(up, down...), up...)...)
		})
	}
}

package decider_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lateAcks is JetStream as the decider sees it when JetStream and the decider are both short of
// CPU: every append is stored at once, but its acknowledgement reaches the decider spacing after
// the one before, and no sooner than latency after the append was sent.
type lateAcks struct {
	jetstream.JetStream
	spacing time.Duration
	latency time.Duration
	mu      sync.Mutex
	last    time.Time
}

func (w *lateAcks) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	at := time.Now()
	if w.last.After(at) {
		at = w.last
	}
	at = at.Add(w.spacing)
	if soonest := time.Now().Add(w.latency); soonest.After(at) {
		at = soonest
	}
	w.last = at
	w.mu.Unlock()
	l := &lateFuture{PubAckFuture: f, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	go func() {
		select {
		case ack := <-f.Ok():
			<-time.After(time.Until(at))
			l.ok <- ack
		case err := <-f.Err():
			<-time.After(time.Until(at))
			l.err <- err
		}
	}()
	return l, nil
}

type lateFuture struct {
	jetstream.PubAckFuture
	ok  chan *jetstream.PubAck
	err chan error
}

func (l *lateFuture) Ok() <-chan *jetstream.PubAck { return l.ok }
func (l *lateFuture) Err() <-chan error            { return l.err }

func TestAcknowledgementsThatComeLateButKeepComingAreWaitedForNotRetried(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "      - name: east\n", "      - name: north\n        endpoints: [{name: n1, address: \"127.0.0.13:8081\"}]\n      - name: east\n", 1)
	// Six appends (three endpoints and their pools come up) whose acknowledgements land 300ms
	// apart: the last one 1.8s after the first was sent, none 500ms after the one before.
	r := start(t, &lateAcks{JetStream: srv.JS, spacing: 300 * time.Millisecond}, eventstest.Config(t, doc), "decider/a")
	eu := &prober{t: t, js: srv.JS, region: "eu"}
	for range 2 {
		for _, pool := range []string{"west", "north", "east"} {
			eu.send("shop", pool, pool[:1]+"1", true)
		}
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.north.n1:up", "pool.shop.north:up",
		"endpoint.shop.east.e1:up", "pool.shop.east:up")
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 6 }, "the decider did not land every append")
	if n := r.stats.Failed.Load(); n != 0 {
		t.Errorf("%d appends counted as failed and sent again; want none while acknowledgements keep coming", n)
	}
}

// In a storm the first acknowledgements may come later than appendTimeout after their appends
// were sent (0.1-0.9 s were measured) while nothing landed before them: they are waited for once
// more rather than every append in flight counted as failed and sent again.
func TestAcknowledgementsLaterThanAnAppendTimeoutAreWaitedForOnceNotRetried(t *testing.T) {
	srv := eventstest.Start(t)
	// Every acknowledgement comes 700ms after its append was sent; ticks every 10ms find the
	// appends overdue from 500ms on.
	r := start(t, &lateAcks{JetStream: srv.JS, latency: 700 * time.Millisecond}, eventstest.Config(t, shopYAML), "decider/a",
		func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	shopUp(t, srv)
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 4 }, "the decider did not land every append")
	if n := r.stats.Failed.Load(); n != 0 {
		t.Errorf("%d appends counted as failed and sent again; want none: each acknowledgement came 700ms after its append", n)
	}
}

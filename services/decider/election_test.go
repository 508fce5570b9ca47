package decider_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderless is JetStream as the decider sees it while STATE elects a new leader: once lose is
// called, an append goes unanswered and nothing is stored, until the election, which ends right
// after the attempt that appends to watch for the electAfter-th time is sent (or at elect).
type leaderless struct {
	jetstream.JetStream
	watch string

	mu         sync.Mutex
	down       bool
	electAfter int
	watched    int // unanswered appends to watch
	dropped    int // unanswered appends
	elected    time.Time
}

// lose starts the election.
func (w *leaderless) lose(electAfter int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down, w.electAfter, w.watched, w.dropped, w.elected = true, electAfter, 0, 0, time.Time{}
}

// drop reports whether an append to subject goes unanswered, counting the attempts on watch.
func (w *leaderless) drop(subject string) bool {
	if !strings.HasPrefix(subject, "detour.state.") {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.down {
		return false
	}
	w.dropped++
	if subject == w.watch {
		w.watched++
		if w.watched == w.electAfter {
			w.down, w.elected = false, time.Now()
		}
	}
	return true
}

// attempts is how many appends went unanswered since lose, on every subject.
func (w *leaderless) attempts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// elect ends the election.
func (w *leaderless) elect() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down, w.elected = false, time.Now()
}

func (w *leaderless) electedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.elected
}

func (w *leaderless) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if w.drop(m.Subject) {
		return unanswered{msg: m}, nil
	}
	return w.JetStream.PublishMsgAsync(m, opts...)
}

func (w *leaderless) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if w.drop(m.Subject) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return w.JetStream.PublishMsg(ctx, m, opts...)
}

// unanswered is the future of an append no stream leader received.
type unanswered struct {
	jetstream.PubAckFuture
	msg *nats.Msg
}

func (u unanswered) Ok() <-chan *jetstream.PubAck { return nil }
func (u unanswered) Err() <-chan error            { return nil }
func (u unanswered) Msg() *nats.Msg               { return u.msg }

// A transition decided while STATE has no leader is tried again about every appendTimeout
// (500 ms) once an attempt went unanswered: once STATE takes appends again it is stored within
// that of its last unanswered attempt, not a second appendTimeout later (a tick waited once more
// for the appends it had found overdue). Only the first attempt's overdue appends are waited for
// once more (see TestAcknowledgementsLaterThanAnAppendTimeoutAreWaitedForOnceNotRetried).
func TestATransitionWaitingForSTATEsElectionIsStoredWithinAnAppendTimeoutOfItsLastAttempt(t *testing.T) {
	srv := eventstest.Start(t)
	// The election ends right after the second attempt of the pool's transition, sent just
	// after the endpoint's: both went unanswered.
	w := &leaderless{JetStream: srv.JS, watch: "detour.state.pool.shop.west"}
	r := start(t, w, eventstest.Config(t, shopYAML), "decider/a", func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	eu := shopUp(t, srv)

	w.lose(2)
	for range 3 {
		eu.send("shop", "west", "w1", false)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return !w.electedAt().IsZero() }, "the decider did not try w1's transition twice")
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(history(t, srv), "endpoint.shop.west.w1:down") },
		"w1's transition was not stored after the election")
	stored := time.Since(w.electedAt())
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down")
	if n := r.stats.Failed.Load(); n < 2 {
		t.Errorf("%d appends counted as failed, want the unanswered attempts (at least 2)", n)
	}
	// The attempt sent just before the election went unanswered: the next one is sent once a
	// tick finds it overdue, appendTimeout after it was sent, plus a few 10 ms ticks.
	if limit := 800 * time.Millisecond; stored > limit {
		t.Errorf("w1's transition was stored %s after STATE took appends again, want within %s (appendTimeout 500ms and a few ticks)", stored, limit)
	}
	t.Logf("stored %s after the election", stored.Round(time.Millisecond))
}

// Once STATE has a leader again it may answer slowly (a backlog after the election): an append
// it stored, whose acknowledgement comes later than appendTimeout, is acknowledged rather than
// counted failed with the unanswered attempts before it, as STATE delivering events shows it
// answers again.
func TestAnAppendStoredAfterTheElectionIsWaitedForWhenItsAcknowledgementIsLate(t *testing.T) {
	srv := eventstest.Start(t)
	w := &leaderless{JetStream: &lateAcks{JetStream: srv.JS, latency: 700 * time.Millisecond}, watch: "detour.state.pool.shop.west"}
	r := start(t, w, eventstest.Config(t, shopYAML), "decider/a", func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	eu := shopUp(t, srv)
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Transitions.Load() == 2 && r.stats.PoolTransitions.Load() == 2 },
		"the ups were not acknowledged")

	w.lose(2)
	for range 3 {
		eu.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down")
	var failed uint64
	eventstest.Eventually(t, 5*time.Second, func() bool {
		failed = r.stats.Failed.Load()
		return r.stats.Transitions.Load() == 3 && r.stats.PoolTransitions.Load() == 3
	}, "w1's down and its pool's, stored after the election, were not acknowledged (%d appends counted as failed)", &failed)
	// The two attempts of w1's down and of its pool's before the election went unanswered.
	if n := r.stats.Failed.Load(); n != 4 {
		t.Errorf("%d appends counted as failed, want the 4 unanswered", n)
	}
}

// shopUp records shopYAML's two endpoints and pools up, with results of region eu, which it
// returns to send more.
func shopUp(t *testing.T, srv *eventstest.Server) *prober {
	t.Helper()
	eu := &prober{t: t, js: srv.JS, region: "eu"}
	for range 2 {
		eu.send("shop", "west", "w1", true)
		eu.send("shop", "east", "e1", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up")
	return eu
}

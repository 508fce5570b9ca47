package decider_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderless is JetStream as the decider sees it while STATE elects a new leader
// (eventstest.Electing on STATE's subjects, its appends unanswered): once lose is called, until
// the election ends right after the attempt that appends to watch for the electAfter-th time is
// sent (or at elect).
type leaderless struct {
	*eventstest.Electing
	watch string

	mu         sync.Mutex
	electAfter int
	watched    int // unanswered appends to watch
	elected    time.Time
}

func newLeaderless(js jetstream.JetStream, watch string) *leaderless {
	return &leaderless{Electing: eventstest.NewElecting(js, "detour.state.", true), watch: watch}
}

// lose starts the election.
func (w *leaderless) lose(electAfter int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.electAfter, w.watched, w.elected = electAfter, 0, time.Time{}
	w.Refused.Store(0)
	w.On.Store(true)
}

// sending counts an append to subject about to be sent; what it returns ends the election once
// that append is sent, when it is the electAfter-th to watch.
func (w *leaderless) sending(subject string) (sent func()) {
	if !w.On.Load() || subject != w.watch {
		return func() {}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watched++; w.watched != w.electAfter {
		return func() {}
	}
	return w.elect
}

// attempts is how many appends went unanswered since lose, on every subject.
func (w *leaderless) attempts() int { return int(w.Refused.Load()) }

// elect ends the election.
func (w *leaderless) elect() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.On.Store(false)
	w.elected = time.Now()
}

func (w *leaderless) electedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.elected
}

func (w *leaderless) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	defer w.sending(m.Subject)()
	return w.Electing.PublishMsgAsync(m, opts...)
}

func (w *leaderless) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	defer w.sending(m.Subject)()
	return w.Electing.PublishMsg(ctx, m, opts...)
}

// A transition decided while STATE has no leader is tried again about every appendTimeout
// (500 ms) once an attempt went unanswered: once STATE takes appends again it is stored within
// that of its last unanswered attempt, not a second appendTimeout later (a tick waited once more
// for the appends it had found overdue). Only the first attempt's overdue appends are waited for
// once more (see TestAcknowledgementsLaterThanAnAppendTimeoutAreWaitedForOnceNotRetried).
func TestATransitionWaitingForSTATEsElectionIsStoredWithinAnAppendTimeoutOfItsLastAttempt(t *testing.T) {
	srv := eventstest.Start(t)
	// The election ends right after the second attempt of the pool's transition, sent just
	// after the endpoint's: both went unanswered.
	w := newLeaderless(srv.JS, "detour.state.pool.shop.west")
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
	w := newLeaderless(&lateAcks{JetStream: srv.JS, latency: 700 * time.Millisecond}, "detour.state.pool.shop.west")
	r := start(t, w, eventstest.Config(t, shopYAML), "decider/a", func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	eu := shopUp(t, srv)
	// Every PROBES message counted: the ups' appends have landed, acknowledged, not given up on.
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 4 }, "the ups were not acknowledged")

	w.lose(2)
	for range 3 {
		eu.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down")
	var counted [2]uint64
	eventstest.Eventually(t, 5*time.Second, func() bool {
		counted = [2]uint64{r.stats.Transitions.Load(), r.stats.PoolTransitions.Load()}
		return r.stats.Messages.Load() == 7 && counted == [2]uint64{3, 3}
	}, "the appends of w1's failing results did not land, or the endpoint and pool transitions counted are %v, want 3 of each", &counted)
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

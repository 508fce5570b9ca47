package decider_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// failovers reads detour_failover_seconds: its observations and their sum.
func failovers(t *testing.T, m *metrics.Metrics) (n uint64, sum float64) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "detour_failover_seconds" {
			for _, s := range f.GetMetric() {
				n += s.GetHistogram().GetSampleCount()
				sum += s.GetHistogram().GetSampleSum()
			}
		}
	}
	return n, sum
}

// waitTransitionsCounted waits until the decider has counted n endpoint and n pool transitions
// as stored by it, so that the failover times of the endpoints' are in the histogram too. STATE
// may hold a transition before the decider has handled its acknowledgement (appends are
// pipelined): the decider counts it on its acknowledgement, or on that delivery where the
// acknowledgement was lost.
func waitTransitionsCounted(t *testing.T, st *decider.Stats, n uint64) {
	t.Helper()
	var endpoints, pools uint64
	eventstest.Eventually(t, 5*time.Second, func() bool {
		endpoints, pools = st.Transitions.Load(), st.PoolTransitions.Load()
		return endpoints >= n && pools >= n
	}, "the decider counted %v endpoint and %v pool transitions as stored, want %v of each", &endpoints, &pools, n)
}

func withMetrics(m *metrics.Metrics) func(*decider.Options) {
	return func(o *decider.Options) { o.Metrics = m }
}

// w1UpThenFailing brings w1 up with two passing results from a prober in eu, waits for STATE to
// record it and its pool up, then sends three failing results, and returns the prober.
func w1UpThenFailing(t *testing.T, srv *eventstest.Server) *prober {
	t.Helper()
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	return p
}

// failedOverByProbes starts a decider with metrics, and a prober in eu that brings w1 up with two
// passing results and takes it down with three failing ones. The decider's JetStream is wrap's
// of the server's, when wrap is given.
func failedOverByProbes(t *testing.T, wrap ...func(jetstream.JetStream) jetstream.JetStream) (*eventstest.Server, *metrics.Metrics, *decider.Stats, *prober) {
	t.Helper()
	srv := eventstest.Start(t)
	m := metrics.New()
	js := srv.JS
	for _, w := range wrap {
		js = w(js)
	}
	r := start(t, js, eventstest.Config(t, shopYAML), "decider/a", withMetrics(m))
	p := w1UpThenFailing(t, srv)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, r.stats, 2)
	return srv, m, r.stats, p
}

func TestADownTransitionAnOperatorCausedIsNoFailoverTime(t *testing.T) {
	srv, m, st, p := failedOverByProbes(t)
	ctx := context.Background()
	if n, _ := failovers(t, m); n != 1 {
		t.Fatalf("after the probes took w1 down, detour_failover_seconds has %d observations, want 1", n)
	}

	// The operator forces the failing endpoint up, then lets the probes decide again: the down
	// transition that follows is the override's, however long ago the failures began.
	own := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "bob@box", Reason: "try it", Action: events.ActionForceUp}
	if err := override.Set(ctx, srv.JS, own); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	p.send("shop", "west", "w1", false)
	own.Action, own.Reason = "", "it still fails"
	if err := override.Clear(ctx, srv.JS, own); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, st, 4)
	if n, sum := failovers(t, m); n != 1 {
		t.Errorf("after an override's down transition, detour_failover_seconds has %d observations (sum %.3fs), want 1", n, sum)
	}
}

func TestAFailoverIsTimedFromTheStreakThatTookTheEndpointDownNotAnEarlierOne(t *testing.T) {
	srv, m, st, p := failedOverByProbes(t)
	_, first := failovers(t, m)

	// The endpoint stays down a while, recovers, and fails again at once: no result passed
	// between its up transition and the second streak of failures.
	const gap = time.Second
	time.Sleep(gap) // not synchronisation: the time the endpoint spends down
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitTransitionsCounted(t, st, 4)
	n, sum := failovers(t, m)
	if n != 2 {
		t.Fatalf("detour_failover_seconds has %d observations, want 2", n)
	}
	if second := sum - first; second >= gap.Seconds() {
		t.Errorf("the second failover took %.3fs by the histogram, timed from the first streak of failures %v earlier; want under %v", second, gap, gap)
	}
}

// lostAck is JetStream losing one acknowledgement: every append is stored, but the future of the
// lose-th (counting from 1) never resolves, as when the node leading STATE dies after storing the
// append and before answering.
type lostAck struct {
	jetstream.JetStream
	lose int
	mu   sync.Mutex
	n    int
}

func (w *lostAck) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n++; err != nil || w.n != w.lose {
		return f, err
	}
	return &lateFuture{PubAckFuture: f, ok: make(chan *jetstream.PubAck), err: make(chan error)}, nil
}

// The decider waits for an acknowledgement for appendTimeout, then keeps the decision for the
// next tick; STATE meanwhile delivers the transition it stored. The transition is this replica's
// all the same: it is counted once, and its failover is timed.
func TestAFailoverWhoseAcknowledgementIsLostIsCountedAndTimedOnce(t *testing.T) {
	// The appends: w1 up, west up, w1 down (the third, whose acknowledgement is lost), west down.
	srv, m, st, _ := failedOverByProbes(t, func(js jetstream.JetStream) jetstream.JetStream { return &lostAck{JetStream: js, lose: 3} })
	if n, sum := failovers(t, m); n != 1 {
		t.Errorf("detour_failover_seconds has %d observations (sum %.3fs), want 1: the failover whose acknowledgement was lost", n, sum)
	}
	// A second look, once the decider has had every chance to count the lost one twice.
	eventstest.Eventually(t, 5*time.Second, func() bool { return st.Failed.Load() > 0 }, "the lost acknowledgement was not waited for and given up")
	if e, pl := st.Transitions.Load(), st.PoolTransitions.Load(); e != 2 || pl != 2 {
		t.Errorf("the decider counted %d endpoint and %d pool transitions, want 2 of each", e, pl)
	}
	if n, _ := failovers(t, m); n != 1 {
		t.Errorf("detour_failover_seconds has %d observations, want 1", n)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
}

// Two replicas fold the same results and race to append each change: STATE keeps one copy, and
// between them the replicas count each transition once, so that the sum of
// detour_transitions_total over the replicas is what STATE holds; also when they share a name
// (two deciders on one host, each named after it by default).
func TestReplicasRacingForEachChangeCountItOnceBetweenThem(t *testing.T) {
	t.Run("named apart", func(t *testing.T) { racingReplicas(t, "decider/a", "decider/b") })
	t.Run("one name", func(t *testing.T) { racingReplicas(t, "decider/a", "decider/a") })
}

func racingReplicas(t *testing.T, nameA, nameB string) {
	srv := eventstest.Start(t)
	c := eventstest.Config(t, shopYAML)
	a := start(t, srv.JS, c, nameA)
	b := start(t, srv.JS, c, nameB)
	p := &prober{t: t, js: srv.JS, region: "eu"}
	const flaps = 10
	var want []string
	for range flaps {
		p.send("shop", "west", "w1", true)
		p.send("shop", "west", "w1", true)
		for range 3 {
			p.send("shop", "west", "w1", false)
		}
		want = append(want, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	}
	waitHistory(t, srv, want...)
	for _, r := range []*replica{a, b} {
		eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 5*flaps },
			"a replica did not land the appends of every result")
	}
	endpoints := a.stats.Transitions.Load() + b.stats.Transitions.Load()
	pools := a.stats.PoolTransitions.Load() + b.stats.PoolTransitions.Load()
	if endpoints != 2*flaps || pools != 2*flaps {
		t.Errorf("the replicas counted %d endpoint and %d pool transitions between them (a %d+%d, b %d+%d), want %d of each, as STATE holds",
			endpoints, pools, a.stats.Transitions.Load(), a.stats.PoolTransitions.Load(), b.stats.Transitions.Load(), b.stats.PoolTransitions.Load(), 2*flaps)
	}
}

// otherFirst is JetStream where another replica stored the copy of one append first: before the
// first-th append (counting from 1) is sent, the same event, with the same id and another
// replica as its source, is stored on its subject. With duplicate, the append is then answered
// as a cluster's stream leader answers it, which checks the message id before the expected
// sequence: a duplicate of the copy, not stored. Without, it is sent, and one JetStream server,
// which checks the expected sequence first, refuses it as a conflict.
type otherFirst struct {
	jetstream.JetStream
	first     int
	duplicate bool
	mu        sync.Mutex
	n         int
}

func (w *otherFirst) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	if n != w.first {
		return w.JetStream.PublishMsgAsync(m, opts...)
	}
	copied, err := eventstest.FromSource(m, "decider/other")
	if err != nil {
		return nil, err
	}
	ack, err := w.JetStream.PublishMsg(context.Background(), copied, opts...)
	if err != nil || !w.duplicate {
		return w.JetStream.PublishMsgAsync(m, opts...)
	}
	f := &answered{msg: m, ok: make(chan *jetstream.PubAck, 1)}
	f.ok <- &jetstream.PubAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: true}
	return f, nil
}

// answered is an append's future whose answer has come.
type answered struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
}

func (f *answered) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *answered) Err() <-chan error            { return nil }
func (f *answered) Msg() *nats.Msg               { return f.msg }

// An append that finds another replica's copy of the same event stored is that replica's
// transition: this one does not count it, nor time its failover, whether JetStream answers a
// conflict or a duplicate.
func TestATransitionAnotherReplicaStoredFirstIsNotCountedAgain(t *testing.T) {
	for _, tc := range []struct {
		name      string
		duplicate bool
	}{{"one server answers a conflict", false}, {"a cluster's leader answers a duplicate", true}} {
		t.Run(tc.name, func(t *testing.T) { otherStoredFirst(t, tc.duplicate) })
	}
}

func otherStoredFirst(t *testing.T, duplicate bool) {
	srv := eventstest.Start(t)
	m := metrics.New()
	// The appends: w1 up, west up, w1 down (stored first by decider/other), west down.
	w := &otherFirst{JetStream: srv.JS, first: 3, duplicate: duplicate}
	r := start(t, w, eventstest.Config(t, shopYAML), "decider/a", withMetrics(m))
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 5 }, "the decider did not land the appends of every result")
	if e, pl := r.stats.Transitions.Load(), r.stats.PoolTransitions.Load(); e != 1 || pl != 2 {
		t.Errorf("decider/a counted %d endpoint and %d pool transitions, want 1 and 2: w1's down is decider/other's", e, pl)
	}
	if n, _ := failovers(t, m); n != 0 {
		t.Errorf("detour_failover_seconds has %d observations, want none: decider/other stored the failover", n)
	}
}

// heldPool is JetStream whose node leading STATE stored the hold-th append to subject (counting
// from 1) and died before answering: the append is never answered, and STATE delivers it only
// once a leader is elected, which is when the next append to subject reaches it.
type heldPool struct {
	jetstream.JetStream
	subject string
	hold    int
	mu      sync.Mutex
	n       int
	held    *nats.Msg
}

func (w *heldPool) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if m.Subject == w.subject {
		w.mu.Lock()
		w.n++
		if w.n == w.hold {
			w.held = m
			w.mu.Unlock()
			return &answered{msg: m, ok: make(chan *jetstream.PubAck)}, nil
		}
		held := w.held
		w.held = nil
		w.mu.Unlock()
		if held != nil {
			if _, err := w.JetStream.PublishMsg(context.Background(), held); err != nil {
				return nil, err
			}
		}
	}
	return w.JetStream.PublishMsgAsync(m, opts...)
}

// threeYAML is shopYAML with three endpoints in west, which stays up while two of them are.
var threeYAML = strings.Replace(shopYAML, `        endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
	`        min_available: 2
        endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}, {name: w3, address: "127.0.0.14:8081"}]`, 1)

// A pool's down whose acknowledgement is lost is tried again once another of its endpoints went
// down meanwhile, so with another cause and id; STATE holds the first, and delivers it with this
// replica as its source. It is counted.
func TestAPoolTransitionWhoseAcknowledgementIsLostIsCountedWhenItsRetryHasANewerCause(t *testing.T) {
	srv := eventstest.Start(t)
	// The pool's appends: up, then down (never answered).
	w := &heldPool{JetStream: srv.JS, subject: "detour.state.pool.shop.west", hold: 2}
	r := start(t, w, eventstest.Config(t, threeYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 2 {
		for _, e := range []string{"w1", "w2", "w3"} {
			p.send("shop", "west", e, true)
		}
	}
	var h []string
	eventstest.Eventually(t, 5*time.Second, func() bool { h = history(t, srv); return len(h) == 4 }, "STATE history is %q, want three ups and the pool's", &h)
	for _, e := range []string{"w3", "w2", "w1"} {
		for range 3 {
			p.send("shop", "west", e, false)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { h = history(t, srv); return len(h) == 8 }, "STATE history is %q, want the downs too", &h)
	t.Logf("STATE history %q", h)
	var n uint64
	eventstest.Eventually(t, 5*time.Second, func() bool { n = r.stats.PoolTransitions.Load(); return n == 2 },
		"the decider counted %d pool transitions, want 2: west's up and its down, whose acknowledgement was lost", &n)
}

// lostThenOtherFirst is a cluster's STATE through an election, raced by another replica: the
// first-th append (counting from 1) is lost with the dying leader (never stored, never
// answered); when this replica sends the same event again, the other replica's copy (same id,
// its own source) reached the new leader just before, and the leader answers a duplicate.
type lostThenOtherFirst struct {
	jetstream.JetStream
	first int
	mu    sync.Mutex
	n     int
	lost  string
}

func (w *lostThenOtherFirst) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	e, err := events.Decode(m.Data)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.n++
	n, lost := w.n, w.lost
	if n == w.first {
		w.lost = e.ID
	}
	w.mu.Unlock()
	if n == w.first {
		return &answered{msg: m, ok: make(chan *jetstream.PubAck)}, nil
	}
	if lost == "" || e.ID != lost {
		return w.JetStream.PublishMsgAsync(m, opts...)
	}
	copied, err := eventstest.FromSource(m, "decider/other")
	if err != nil {
		return nil, err
	}
	ack, err := w.JetStream.PublishMsg(context.Background(), copied, opts...)
	if err != nil {
		return nil, err
	}
	f := &answered{msg: m, ok: make(chan *jetstream.PubAck, 1)}
	f.ok <- &jetstream.PubAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: true}
	return f, nil
}

// Both replicas' first attempts at w1's down are lost in an election; the other's retry lands
// first, and this one's is answered as a duplicate of it. STATE holds decider/other's event:
// decider/a does not count it, nor time its failover.
func TestALostAttemptWhoseRetryIsADuplicateOfAnotherReplicasCopyIsNotCounted(t *testing.T) {
	srv := eventstest.Start(t)
	m := metrics.New()
	// The appends: w1 up, west up, w1 down (lost, then stored by decider/other), …
	r := start(t, &lostThenOtherFirst{JetStream: srv.JS, first: 3}, eventstest.Config(t, shopYAML), "decider/a", withMetrics(m))
	p := w1UpThenFailing(t, srv)
	// The pool's down, sent behind the lost attempt, is stored before decider/other's copy.
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "pool.shop.west:down", "endpoint.shop.west.w1:down")
	// w1 comes back: its up is appended once the retry of its down has its answer.
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "pool.shop.west:down", "endpoint.shop.west.w1:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
	for _, s := range stateOf(t, srv) {
		if s.Subject == "detour.state.endpoint.shop.west.w1" && s.Env.Type == events.TypeEndpointDown && s.Env.Source != "decider/other" {
			t.Fatalf("w1's down stored from %q, want decider/other's copy", s.Env.Source)
		}
	}
	waitTransitionsCounted(t, r.stats, 2)
	if e := r.stats.Transitions.Load(); e != 2 {
		t.Errorf("decider/a counted %d endpoint transitions, want 2, its two ups: w1's down is decider/other's", e)
	}
	if n, _ := failovers(t, m); n != 0 {
		t.Errorf("detour_failover_seconds has %d observations, want none: decider/other stored the failover", n)
	}
}

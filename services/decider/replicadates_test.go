package decider_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/services/decider"
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

// laterDates is JetStream for a replica that dates every change it appends later than another
// replica would (it heard its results on the wire, while the other reads them from PROBES).
type laterDates struct {
	jetstream.JetStream
	later time.Duration
}

func (w laterDates) date(m *nats.Msg) (*nats.Msg, error) {
	e, err := events.Decode(m.Data)
	if err != nil {
		return nil, err
	}
	e.Time = e.Time.Add(w.later)
	m.Data = e.Encode()
	return m, nil
}

func (w laterDates) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	m, err := w.date(m)
	if err != nil {
		return nil, err
	}
	return w.JetStream.PublishMsg(ctx, m, opts...)
}

func (w laterDates) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	m, err := w.date(m)
	if err != nil {
		return nil, err
	}
	return w.JetStream.PublishMsgAsync(m, opts...)
}

// A replica that learned an endpoint's transition only from another replica's copy, dated later
// than its own clock dates the results that follow, records the endpoint's next transition, and
// its pool's, when that replica has died: the failover happens within a few check intervals.
// Replica A starts while B runs (a restart, or a replica added), and finds w1 up in STATE as B
// dated it; B then dies, and w1 fails. A dropped its down transition as older than B's up, and
// nothing appended it, ever. The down is the failover the probes decided, whichever way A learned
// of the up: caused by the third failure, its reason theirs, and timed in
// detour_failover_seconds.
func TestAReplicaRecordsTheNextTransitionAfterOneAnotherReplicaDatedLaterWhenThatReplicaDies(t *testing.T) {
	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	for _, tc := range []struct {
		name  string
		tweak []func(*decider.Options)
	}{
		// A folds the result that took w1 up (its replay window holds it).
		{name: "A folded the result that caused it"},
		// A's replay window begins after that result: A knows w1 up from STATE alone.
		{name: "A never folded the result that caused it", tweak: []func(*decider.Options){
			func(o *decider.Options) { o.Replay = time.Millisecond }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := eventstest.Start(t)
			cfg := eventstest.Config(t, shopYAML)
			b := start(t, laterDates{srv.JS, 10 * time.Second}, cfg, "decider/b")
			p := &prober{t: t, js: srv.JS, region: "eu"}
			p.send("shop", "west", "w1", true)
			p.send("shop", "west", "w1", true)
			waitHistory(t, srv, up...)
			m := metrics.New()
			a := start(t, srv.JS, cfg, "decider/a", append(tc.tweak, withMetrics(m))...)
			b.stop()
			var last string
			for range 3 {
				last = p.send("shop", "west", "w1", false)
			}
			// A few check intervals of shopYAML (1s) from the result that completed fall.
			want := append(up, down...)
			var got []string
			eventstest.Eventually(t, 3*time.Second, func() bool {
				got = history(t, srv)
				return reflect.DeepEqual(got, want)
			}, "3s after w1's third failure, with decider/b dead, STATE history is %q, want %q", &got, want)
			down := stateOf(t, srv)[2].Env
			var tr events.Transition
			if err := down.Payload(&tr); err != nil {
				t.Fatal(err)
			}
			if down.Cause != last || down.Source != "decider/a" || !strings.HasPrefix(tr.Reason, "eu: 3 consecutive failures (fall 3)") {
				t.Errorf("w1 down caused by %q from %q for %q, want caused by the third failure %q from decider/a for its streak",
					down.Cause, down.Source, tr.Reason, last)
			}
			waitTransitionsCounted(t, a.stats, 1)
			if n, _ := failovers(t, m); n != 1 {
				t.Errorf("detour_failover_seconds has %d observations, want the failover's 1", n)
			}
			datedInOrder(t, srv)
		})
	}
}

// datedInOrder fails the test when STATE holds an event dated before the one stored ahead of it
// on its subject: a status page or an API showing how long a status lasted would show a negative
// duration.
func datedInOrder(t *testing.T, srv *eventstest.Server) {
	t.Helper()
	last := map[string]stored{}
	for _, s := range stateOf(t, srv) {
		if prev, ok := last[s.Subject]; ok && s.Env.Time.Before(prev.Env.Time) {
			t.Errorf("%s: %s from %s dated %s, %s before the %s stored ahead of it", s.Subject, s.Env.Type, s.Env.Source,
				s.Env.Time.Format(time.RFC3339Nano), prev.Env.Time.Sub(s.Env.Time), prev.Env.Type)
		}
		last[s.Subject] = s
	}
}

package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// lostStoreAck is JetStream losing the answer to the lose-th append (counting from 1) to
// subject: it is stored, but the caller hears nothing until its context ends, as when the node
// leading STATE dies between storing an append and answering it.
type lostStoreAck struct {
	jetstream.JetStream
	subject string
	lose    int
	mu      sync.Mutex
	n       int
	// lost is set once the lost append's caller has given up.
	lost atomic.Bool
}

func (w *lostStoreAck) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := w.JetStream.PublishMsg(ctx, m, opts...)
	if err != nil || m.Subject != w.subject {
		return ack, err
	}
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	if n != w.lose {
		return ack, err
	}
	<-ctx.Done()
	w.lost.Store(true)
	return nil, ctx.Err()
}

// edgeTransitions reads detour_transitions_total{kind="edge"}, of every to, or of to when it
// is given.
func edgeTransitions(t *testing.T, m *metrics.Metrics, to ...string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, f := range fams {
		if f.GetName() != "detour_transitions_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == "edge" && (len(to) == 0 || labels["to"] == to[0]) {
				n += s.GetCounter().GetValue()
			}
		}
	}
	return n
}

// countingController runs controller-1 on edgesDoc over js, with metrics, which it returns.
func countingController(t *testing.T, js jetstream.JetStream) *metrics.Metrics {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	})
	return m
}

// STATE stores an edge's down transition but its answer is lost; STATE then delivers the event,
// so the next tick has nothing to append. The transition is this controller's all the same: it
// is counted once.
func TestAnEdgeTransitionWhoseAcknowledgementIsLostIsCountedOnce(t *testing.T) {
	ns := eventstest.Start(t)
	east := events.EdgeStateSubject("edge-east")
	// edge-east's appends: up, then down (whose answer is lost).
	w := &lostStoreAck{JetStream: ns.JS, subject: east, lose: 2}
	m := countingController(t, w)
	stopEast := make(chan struct{})
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	beat(t, ns, "edge-east", 100*time.Millisecond, stopEast)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, east)) == "U" && edgeTransitions(t, m) == 2
	}, "both edges up, and counted")

	close(stopEast)
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "UD" }, "edge-east down")
	eventstest.Eventually(t, 5*time.Second, w.lost.Load, "the down's append was not given up on")
	var n float64
	eventstest.Eventually(t, 5*time.Second, func() bool { n = edgeTransitions(t, m); return n == 3 },
		"detour_transitions_total{kind=\"edge\"} is %v, want 3: both ups and edge-east's down, whose answer was lost", &n)
	if got := types(history(t, ns, events.StreamState, east)); got != "UD" {
		t.Errorf("edge-east's history is %q, want UD: the lost answer's transition appended once", got)
	}
}

// electingStore is JetStream while STATE elects a leader after its old leader stored the first
// append to subject and died before answering: the caller hears nothing until its context ends,
// and STATE delivers the stored event only once a leader is elected, which is when the next
// append to subject (the retry) reaches it.
type electingStore struct {
	jetstream.JetStream
	subject string
	mu      sync.Mutex
	held    *nats.Msg
	done    bool
}

func (w *electingStore) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if m.Subject != w.subject {
		return w.JetStream.PublishMsg(ctx, m, opts...)
	}
	w.mu.Lock()
	if !w.done && w.held == nil {
		w.held = m
		w.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	held := w.held
	w.held, w.done = nil, true
	w.mu.Unlock()
	if held != nil {
		if _, err := w.JetStream.PublishMsg(context.Background(), held); err != nil {
			return nil, err
		}
	}
	return w.JetStream.PublishMsg(ctx, m, opts...)
}

// An up whose answer is lost while STATE elects a leader, and tried again (on a newer
// heartbeat, so with another id) before STATE delivers it, is this controller's transition all
// the same: it is counted.
func TestAnEdgeUpWhoseAnswerIsLostAndTriedAgainBeforeSTATEDeliversItIsCounted(t *testing.T) {
	ns := eventstest.Start(t)
	east := events.EdgeStateSubject("edge-east")
	m := countingController(t, &electingStore{JetStream: ns.JS, subject: east})
	beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
	beat(t, ns, "edge-east", 100*time.Millisecond, make(chan struct{}))
	var h []events.Envelope
	eventstest.Eventually(t, 10*time.Second, func() bool {
		h = history(t, ns, events.StreamState, east)
		return types(h) == "U" && types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-west"))) == "U"
	}, "both edges up")
	if h[0].Source != "controller-1" {
		t.Fatalf("edge-east's up was stored from %q, want controller-1", h[0].Source)
	}
	var n float64
	eventstest.Eventually(t, 5*time.Second, func() bool { n = edgeTransitions(t, m, "up"); return n == 2 },
		"detour_transitions_total{kind=\"edge\",to=\"up\"} is %v, want 2: edge-west's and edge-east's, whose answer was lost", &n)
}

// otherFirst is JetStream where another controller stored the copy of edge-east's first
// transition first: the same event, with the same id and controller-2 as its source. With
// duplicate, this controller's append is then answered as a cluster's stream leader answers it,
// which checks the message id before the expected sequence: a duplicate of the copy. Without,
// it is sent, and one JetStream server refuses it as a conflict.
type otherFirst struct {
	jetstream.JetStream
	subject   string
	duplicate bool
	done      atomic.Bool
}

func (w *otherFirst) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if m.Subject != w.subject || !w.done.CompareAndSwap(false, true) {
		return w.JetStream.PublishMsg(ctx, m, opts...)
	}
	copied, err := eventstest.FromSource(m, "controller-2")
	if err != nil {
		return nil, err
	}
	ack, err := w.JetStream.PublishMsg(ctx, copied, opts...)
	if err != nil || !w.duplicate {
		return w.JetStream.PublishMsg(ctx, m, opts...)
	}
	return &jetstream.PubAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: true}, nil
}

// Two controllers hear the same heartbeat and derive the same up: the one whose copy STATE
// stored counts it, the other does not, whether JetStream answers it a conflict or a duplicate.
func TestAnEdgeTransitionAnotherControllerStoredFirstIsNotCountedAgain(t *testing.T) {
	for _, tc := range []struct {
		name      string
		duplicate bool
	}{{"one server answers a conflict", false}, {"a cluster's leader answers a duplicate", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := eventstest.Start(t)
			east := events.EdgeStateSubject("edge-east")
			m := countingController(t, &otherFirst{JetStream: ns.JS, subject: east, duplicate: tc.duplicate})
			stopEast := make(chan struct{})
			beat(t, ns, "edge-west", 100*time.Millisecond, make(chan struct{}))
			beat(t, ns, "edge-east", 100*time.Millisecond, stopEast)
			west := events.EdgeStateSubject("edge-west")
			eventstest.Eventually(t, 5*time.Second, func() bool {
				return types(history(t, ns, events.StreamState, east)) == "U" && types(history(t, ns, events.StreamState, west)) == "U"
			}, "both edges up")
			if h := history(t, ns, events.StreamState, east); h[0].Source != "controller-2" {
				t.Fatalf("edge-east's up was stored from %q, want controller-2's copy", h[0].Source)
			}
			// edge-east's down is sent once its up's append has been answered: when the down is
			// counted, so is every up this controller counts.
			close(stopEast)
			var ups, downs float64
			eventstest.Eventually(t, 5*time.Second, func() bool {
				ups, downs = edgeTransitions(t, m, "up"), edgeTransitions(t, m, "down")
				return ups >= 1 && downs == 1
			}, "edge-west's up and edge-east's down not counted (%v ups, %v downs)", &ups, &downs)
			if ups != 1 {
				t.Errorf("detour_transitions_total{kind=\"edge\",to=\"up\"} is %v, want 1: edge-west's, not controller-2's of edge-east", ups)
			}
		})
	}
}

package decider

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// unanswered is JetStream whose lose-th append (counting from 1) is stored, but never answered:
// the node leading STATE died after storing it.
type unanswered struct {
	jetstream.JetStream
	lose int
	mu   sync.Mutex
	n    int
}

func (w *unanswered) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n++; err != nil || w.n != w.lose {
		return f, err
	}
	return silent{f}, nil
}

// silent is an append's future whose answer never comes.
type silent struct{ jetstream.PubAckFuture }

func (silent) Ok() <-chan *jetstream.PubAck { return nil }
func (silent) Err() <-chan error            { return nil }

// unansweredStage is decider/a, hand driven on a real JetStream whose lose-th append (counting
// from 1) is stored but never answered, and what the tests below do with it.
type unansweredStage struct {
	srv      *eventstest.Server
	d        *decider
	w1, west string
	probes   jetstream.Stream
}

func stageUnanswered(t *testing.T, lose int) *unansweredStage {
	srv := eventstest.Start(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	d := handDriven(Options{Config: w1Config(t, ""), Name: "decider/a", Log: log, Now: time.Now, Stats: &Stats{}},
		&unanswered{JetStream: srv.JS, lose: lose})
	d.log, d.state = log, srv.Stream(t, events.StreamState)
	return &unansweredStage{srv: srv, d: d, probes: srv.Stream(t, events.StreamProbes),
		w1: events.EndpointStateSubject("shop", "west", "w1"), west: events.PoolStateSubject("shop", "west")}
}

// publish stores a result of w1 in PROBES, a pass when ok, and returns its delivery.
func (s *unansweredStage) publish(t *testing.T, id string, ok bool) delivery {
	return publishW1(t, s.srv.JS, s.probes, id, ok)
}

// fold has decider/a fold a delivery and land its appends.
func (s *unansweredStage) fold(dl delivery) {
	ctx := context.Background()
	s.d.onProbes(ctx, dl)
	s.d.flush(ctx)
	s.d.settle(ctx)
}

// tick runs decider/a's tick and lands its appends.
func (s *unansweredStage) tick() {
	ctx := context.Background()
	s.d.tick(ctx, time.Now())
	s.d.settle(ctx)
}

// record appends decider/b's transition of subject to to after seq, caused by the result r.
func (s *unansweredStage) record(t *testing.T, subject string, to events.Status, r delivery, after uint64) {
	t.Helper()
	tr := events.Transition{App: "shop", Pool: "west", To: to}
	typ := poolType(to)
	if subject == s.w1 {
		tr.Endpoint, typ = "w1", endpointType(to)
	}
	e, err := events.Derived(typ, "decider/b", r.results[0].ID, derivedKey(subject, to, after), r.stamp, tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Append(context.Background(), s.srv.JS, subject, e, after); err != nil {
		t.Fatal(err)
	}
}

// TestAnEndpointTransitionReadBackAfterAConflictIsFollowedByItsPoolsBeyondWhatStateDelivered:
// decider/a's STATE reader lags. It brought w1 and west up, then down, but the answer to w1's
// down never came: it shows w1 up again, and west down. decider/b, ahead in the probes, recorded
// w1 up and west up, then w1 down, and died before west's down. decider/a folds the same
// results: its down of w1 is refused, and it reads w1 back, down, stored after west's up, which
// its reader has not delivered. West follows w1 down before w1 comes up again: STATE never
// shows the pool up while its only endpoint is down, nor misses the pair, as a CI run of
// TestReplicasRacingForEachChangeCountItOnceBetweenThem/one_name showed (a pool left down
// while w1 was up) when a replica took its pool for already where the endpoint read back put it.
func TestAnEndpointTransitionReadBackAfterAConflictIsFollowedByItsPoolsBeyondWhatStateDelivered(t *testing.T) {
	// decider/a's appends: w1 up, west up, w1 down (never answered), west down, …
	s := stageUnanswered(t, 3)
	s.fold(s.publish(t, "eu-1", true))  // w1 up at 1, west up at 2
	s.fold(s.publish(t, "eu-2", false)) // w1 down at 3, unanswered; west down at 4
	pass, fail := s.publish(t, "eu-3", true), s.publish(t, "eu-4", false)
	s.record(t, s.w1, events.StatusUp, pass, 3)
	s.record(t, s.west, events.StatusUp, pass, 4)
	s.record(t, s.w1, events.StatusDown, fail, 5)
	s.fold(pass)
	s.fold(fail) // refused: w1 reads back down at 7, after west's up at 6
	s.fold(s.publish(t, "eu-5", true))

	got := stateHistory(t, s.d.state)
	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	if want := slices.Concat(up, down, up, down, up); !reflect.DeepEqual(got, want) {
		t.Errorf("STATE history is %q, want %q", got, want)
	}
}

// publishW1 stores a result of w1 in PROBES, a pass when ok, and returns its delivery.
func publishW1(t *testing.T, js jetstream.JetStream, probes jetstream.Stream, id string, ok bool) delivery {
	t.Helper()
	ctx := context.Background()
	e := w1Result(t, id, time.Now(), ok)
	ack, err := events.Publish(ctx, js, events.ProbeSubject("eu", "shop", "west", "w1"), e)
	if err != nil {
		t.Fatal(err)
	}
	m, err := probes.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := events.DecodeProbes(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return delivery{subject: m.Subject, id: e.ID, seq: ack.Sequence, stamp: m.Time, data: m.Data, results: rs}
}

// stateHistory is every event STATE holds, oldest first, as its subject past "detour.state."
// and the status it records ("endpoint.shop.west.w1:up").
func stateHistory(t *testing.T, state jetstream.Stream) []string {
	t.Helper()
	ctx := context.Background()
	info, err := state.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := state.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		status, _ := events.TransitionStatus(e.Type)
		got = append(got, strings.TrimPrefix(m.Subject, "detour.state.")+":"+string(status))
	}
	return got
}

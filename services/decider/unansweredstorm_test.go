package decider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// silencing is JetStream whose answers to appends never come while silent is set (the appends
// are stored all the same).
type silencing struct {
	jetstream.JetStream
	silent atomic.Bool
}

func (w *silencing) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := w.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || !w.silent.Load() {
		return f, err
	}
	return silent{f}, nil
}

// stormYAML is one app of pools×per endpoints that one result takes down or brings up.
func stormYAML(pools, per int) string {
	var b strings.Builder
	b.WriteString(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, timeout: 500ms, fall: 1, rise: 1, stale_after: 1h}
    pools:
`)
	for p := range pools {
		fmt.Fprintf(&b, "      - name: p%d\n        endpoints:\n", p)
		for e := range per {
			fmt.Fprintf(&b, "          - {name: e%d, address: \"10.%d.%d.%d:80\"}\n", e, p/250, p%250, e+1)
		}
	}
	return b.String()
}

// stormDecider is decider/a, hand driven, for stormYAML(pools, per) on a JetStream server of
// its own, whose answers to appends are silenced while js.silent is set.
func stormDecider(t *testing.T, pools, per int) (*eventstest.Server, *silencing, *decider) {
	t.Helper()
	srv := eventstest.Start(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel + 1)
	js := &silencing{JetStream: srv.JS}
	d := handDriven(Options{Config: eventstest.Config(t, stormYAML(pools, per)), Name: "decider/a", Log: log, Now: time.Now, Stats: &Stats{}}, js)
	d.log, d.state = log, srv.Stream(t, events.StreamState)
	return srv, js, d
}

// stormResults is one result of region eu for every endpoint of stormYAML(pools, per), a pass
// when ok; round keeps the results' ids apart from those of the other rounds.
func stormResults(pools, per, round int, ok bool) []events.ProbeResult {
	var rs []events.ProbeResult
	for p := range pools {
		for e := range per {
			rs = append(rs, events.ProbeResult{ID: fmt.Sprintf("r%d-%d-%d", round, p, e), App: "shop", Pool: fmt.Sprintf("p%d", p),
				Endpoint: fmt.Sprintf("e%d", e), Region: "eu", Prober: "p1", Check: "tcp", OK: ok})
		}
	}
	return rs
}

// TestAStormOfFlapsAfterUnansweredAppendsStallsATickByAboutAnAppendTimeout: 10,000 endpoints
// come up at once, their appends stored but never answered (a leader slow to answer), and fail
// again before the next tick: each down looks recorded already, and STATE's leader is read
// back before it is dropped. One read each, one after another, stalled the loop for as long
// as 10,000 round trips to the leader (3.2 s on loopback; each read may wait appendTimeout for
// a slow leader), while every other decision waited: a tick's reads are bounded by
// appendTimeout in all, and the rest wait for the next.
func TestAStormOfFlapsAfterUnansweredAppendsStallsATickByAboutAnAppendTimeout(t *testing.T) {
	const pools, per = 100, 100
	srv, js, d := stormDecider(t, pools, per)
	ctx := context.Background()
	// reads counts the reads of STATE's leader (events.LeaderLast).
	var reads atomic.Int64
	sub, err := srv.Conn.Subscribe("$JS.API.STREAM.MSG.GET."+events.StreamState, func(*nats.Msg) { reads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	n := 0
	all := func(ok bool) {
		n++
		d.fold(ctx, stormResults(pools, per, n, ok), time.Now(), "eu", false)
		d.flush(ctx)
		d.settle(ctx)
	}
	all(true)
	all(false)
	js.silent.Store(true)
	all(true) // stored, never answered
	// The flush sent the first maxInFlight and kept the others while the appends are stalled
	// (see flush); the next ticks would send them maxInFlight at a time. Sent on at once here,
	// as before flush kept them, every one of the 10,000 is stored unanswered, the storm whose
	// reads the tick must bound.
	for len(d.queued) > 0 {
		d.appendsStalled = false
		d.flush(ctx)
		d.settle(ctx)
	}
	js.silent.Store(false)
	all(false) // before the next tick
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	before := reads.Load()
	start := time.Now()
	d.tick(ctx, time.Now())
	took := time.Since(start)
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("tick took %v, %d leader reads", took, reads.Load()-before)
	if took > 4*appendTimeout {
		t.Errorf("the tick after a storm of flaps on unanswered appends took %v, want about appendTimeout (%v)", took, appendTimeout)
	}
}

// TestAStormOfFailuresWhileSTATEsLeaderIsSilentHoldsTheLoopForAboutTwoAppendTimeouts: 10,000
// endpoints (100 pools of 100) fail at once while STATE's leader has stopped answering (their
// appends are stored, but no acknowledgement comes). The flush sent them 1,000 at a time
// (maxInFlight), and each time the pipe was full it waited appendTimeout for the oldest's
// acknowledgement, then appendTimeout more for the others': ten times over, it held the loop
// for about 10 s (no PROBES read, no tick, the leader's return unnoticed), and the next tick,
// trying them again, as long. Once an append failed, the rest wait for the next tick: a flush,
// and a tick, hold the loop for about two appendTimeouts. Once the leader answers again, every
// transition is in STATE within a few ticks, once (the retries of those stored unanswered are
// duplicates), and every endpoint's and pool's last event is its down.
func TestAStormOfFailuresWhileSTATEsLeaderIsSilentHoldsTheLoopForAboutTwoAppendTimeouts(t *testing.T) {
	const pools, per = 100, 100
	const subjects = pools*per + pools
	_, js, d := stormDecider(t, pools, per)
	ctx := context.Background()
	stored := func() uint64 {
		info, err := d.state.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	d.fold(ctx, stormResults(pools, per, 1, true), time.Now(), "eu", false)
	d.flush(ctx)
	d.settle(ctx)
	if got := stored(); got != subjects {
		t.Fatalf("STATE holds %d events once every endpoint came up, want %d", got, subjects)
	}

	js.silent.Store(true)
	start := time.Now()
	d.fold(ctx, stormResults(pools, per, 2, false), time.Now(), "eu", false)
	folded := time.Since(start)
	start = time.Now()
	d.flush(ctx)
	flushed := time.Since(start)
	start = time.Now()
	d.tick(ctx, time.Now())
	ticked := time.Since(start)
	t.Logf("while the leader was silent, 10,000 failures took %v to fold, %v to flush, and the tick after them %v", folded, flushed, ticked)
	const bound = 3 * appendTimeout
	if flushed > bound {
		t.Errorf("the flush of 10,000 failures held the loop %v while STATE's leader was silent, want at most %v", flushed, bound)
	}
	if ticked > bound {
		t.Errorf("the tick after 10,000 failures held the loop %v while STATE's leader was silent, want at most %v", ticked, bound)
	}

	js.silent.Store(false)
	answered := time.Now()
	const within = 5 * time.Second
	var got uint64
	eventstest.Eventually(t, within, func() bool {
		d.tick(ctx, time.Now())
		got = stored()
		return got >= 2*subjects
	}, "%d events in STATE after the leader answered again, want %d", &got, 2*subjects)
	t.Logf("every transition stored %v after the leader answered again", time.Since(answered).Round(time.Millisecond))
	d.tick(ctx, time.Now())
	d.settle(ctx)
	counts := subjectCounts(t, d.state)
	for subject, n := range counts {
		if n != 2 {
			t.Errorf("STATE holds %d events on %s, want its up and its down", n, subject)
		}
	}
	last := lastStatuses(t, d.state, len(counts))
	if len(counts) != subjects || len(last) != subjects {
		t.Errorf("STATE holds events on %d subjects (%d read back), want %d", len(counts), len(last), subjects)
	}
	for subject, status := range last {
		if status != events.StatusDown {
			t.Errorf("the last event on %s is %s, want down", subject, status)
		}
	}
}

// subjectCounts is how many events STATE holds on each of its subjects.
func subjectCounts(t *testing.T, state jetstream.Stream) map[string]uint64 {
	t.Helper()
	info, err := state.Info(context.Background(), jetstream.WithSubjectFilter(events.SubjectState))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

// lastStatuses is the status of the last transition STATE holds on each of its n subjects.
func lastStatuses(t *testing.T, state jetstream.Stream, n int) map[string]events.Status {
	t.Helper()
	ctx := context.Background()
	c, err := state.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]events.Status{}
	for len(last) < n {
		batch, err := c.Fetch(n-len(last), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		read := 0
		for m := range batch.Messages() {
			read++
			e, err := events.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			last[m.Subject()], _ = events.TransitionStatus(e.Type)
		}
		if err := batch.Error(); err != nil || read == 0 {
			t.Fatalf("read the last event of %d of STATE's %d subjects: %v", len(last), n, err)
		}
	}
	return last
}

// refusingPools is silencing JetStream that refuses every append to a pool's subject at once
// while refuse is set, as a connection closed under it does.
type refusingPools struct {
	*silencing
	refuse atomic.Bool
}

var errRefused = errors.New("refused by the test")

func (w *refusingPools) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if w.refuse.Load() && strings.HasPrefix(m.Subject, "detour.state.pool.") {
		return nil, errRefused
	}
	return w.silencing.PublishMsg(ctx, m, opts...)
}

func (w *refusingPools) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if w.refuse.Load() && strings.HasPrefix(m.Subject, "detour.state.pool.") {
		return nil, errRefused
	}
	return w.silencing.PublishMsgAsync(m, opts...)
}

// TestATickRetryingThousandsOfPoolsWhileSTATEsLeaderIsSilentHoldsTheLoopForAboutTwoAppendTimeouts:
// 4,000 pools of one endpoint each failed at once, their endpoints' downs stored and their own
// refused (each waits for the next tick, retryLater), and STATE's leader has stopped answering
// when the tick sends them again. Once an append failed, the endpoints' transitions still
// queued wait for the next tick (see flush), but the pools' went on being sent: each time the
// pipe filled up (maxInFlight), the tick waited appendTimeout for the oldest's answer and
// appendTimeout more for the others', three times over for 4,000 pools, while no PROBES message
// was read. The pools still to send once the appends stalled wait for the next tick too, and
// every pool's down is stored once the leader answers again.
func TestATickRetryingThousandsOfPoolsWhileSTATEsLeaderIsSilentHoldsTheLoopForAboutTwoAppendTimeouts(t *testing.T) {
	const pools = 4000
	_, silent, d := stormDecider(t, pools, 1)
	js := &refusingPools{silencing: silent}
	d.js = js
	ctx := context.Background()
	d.fold(ctx, stormResults(pools, 1, 1, true), time.Now(), "eu", false)
	d.flush(ctx)
	d.settle(ctx)

	js.refuse.Store(true)
	d.fold(ctx, stormResults(pools, 1, 2, false), time.Now(), "eu", false)
	d.flush(ctx)
	d.settle(ctx)
	if len(d.retrying) != pools {
		t.Fatalf("%d pools wait for the next tick with their appends refused, want %d", len(d.retrying), pools)
	}
	js.refuse.Store(false)
	js.silent.Store(true)
	start := time.Now()
	d.tick(ctx, time.Now())
	ticked := time.Since(start)
	t.Logf("the tick sending %d pools' transitions again while the leader was silent took %v", pools, ticked)
	if bound := 4 * appendTimeout; ticked > bound {
		t.Errorf("the tick held the loop %v while STATE's leader was silent, want at most %v", ticked, bound)
	}

	js.silent.Store(false)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		d.tick(ctx, time.Now())
		info, err := d.state.Info(ctx)
		return err == nil && info.State.Msgs >= 4*pools
	}, "every endpoint's and pool's down in STATE after the leader answered again")
	d.tick(ctx, time.Now())
	d.settle(ctx)
	for subject, status := range lastStatuses(t, d.state, 2*pools) {
		if status != events.StatusDown {
			t.Errorf("the last event on %s is %s, want down", subject, status)
		}
	}
}

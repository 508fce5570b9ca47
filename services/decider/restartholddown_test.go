package decider_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// holdDownYAML is shopYAML with results every 50 ms, fall and rise 1, stale_after 2s and a
// hold_down of 3s: a starting decider reads back 2 s of PROBES, less than a hold-down.
func holdDownYAML() string {
	doc := strings.Replace(shopYAML, "interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h",
		"interval: 50ms, timeout: 40ms, fall: 1, rise: 1, stale_after: 2s", 1)
	return strings.Replace(doc, "    pools:", "    hold_down: 3s\n    pools:", 1)
}

// endpointUp returns the first up transition STATE holds on w1, or false.
func endpointUp(t *testing.T, srv *eventstest.Server) (events.Envelope, bool) {
	t.Helper()
	for _, s := range stateOf(t, srv) {
		if s.Subject == "detour.state.endpoint.shop.west.w1" && s.Env.Type == events.TypeEndpointUp {
			return s.Env, true
		}
	}
	return events.Envelope{}, false
}

// replayedUp replays the streams with the configuration's own thresholds, as an operator would
// (`detour replay --what-if quorum=0.5 --format json`), and returns the verdict on w1's first up
// transition and its cause, replayed.
func replayedUp(t *testing.T, srv *eventstest.Server, cfg *config.Config) (verdict, cause string) {
	t.Helper()
	ups := replayedUps(t, srv, cfg)
	return ups[0][0], ups[0][1]
}

// replayedLastUp is replayedUp for w1's last up transition.
func replayedLastUp(t *testing.T, srv *eventstest.Server, cfg *config.Config) (verdict, cause string) {
	t.Helper()
	ups := replayedUps(t, srv, cfg)
	return ups[len(ups)-1][0], ups[len(ups)-1][1]
}

// replayedUps returns the verdict and cause of each of w1's up transitions, replayed as
// replayedUp does, in order; the test fails when there is none.
func replayedUps(t *testing.T, srv *eventstest.Server, cfg *config.Config) [][2]string {
	t.Helper()
	lines, out := decider.Replay(t, srv, cfg, false)
	var ups [][2]string
	for _, p := range lines {
		if p.Kind == "what_if" && p.Endpoint == "w1" && p.To == string(events.StatusUp) && p.WhatIf != nil {
			ups = append(ups, [2]string{p.Verdict, p.WhatIf.Cause})
		}
	}
	if len(ups) == 0 {
		t.Fatalf("detour replay has no up transition of w1:\n%s", out)
	}
	return ups
}

// w1Transitions lists w1's transitions STATE holds, as "to at time caused by cause".
func w1Transitions(t *testing.T, srv *eventstest.Server) []string {
	t.Helper()
	var out []string
	for _, s := range stateOf(t, srv) {
		if to, ok := events.TransitionStatus(s.Env.Type); ok && s.Subject == events.EndpointStateSubject("shop", "west", "w1") {
			out = append(out, string(to)+" at "+s.Env.Time.Format(time.RFC3339Nano)+" caused by "+s.Env.Cause)
		}
	}
	return out
}

// passUntilRecorded has w1 pass every 50 ms, as configured, until STATE records its hold-down
// begun (once it has lasted half the 2 s a starting decider reads back), and returns the id of
// the first pass.
func passUntilRecorded(t *testing.T, srv *eventstest.Server, p *prober) string {
	t.Helper()
	first := p.send("shop", "west", "w1", true)
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, _, ok, err := events.Last(context.Background(), srv.Stream(t, events.StreamState), events.HoldDownSubject("shop", "west", "w1"))
		if err == nil && ok && e.Type == events.TypeHoldDownStarted && e.Cause == first {
			return first
		}
		if time.Now().After(deadline) {
			t.Fatalf("STATE records no hold-down of w1 begun by %s 5 s after it", first)
		}
		<-checks.C
		p.send("shop", "west", "w1", true)
	}
}

// holdDownBegan returns when the hold-down STATE last records of w1 began.
func holdDownBegan(t *testing.T, srv *eventstest.Server) time.Time {
	t.Helper()
	began, _, _, err := events.Last(context.Background(), srv.Stream(t, events.StreamState), events.HoldDownSubject("shop", "west", "w1"))
	if err != nil {
		t.Fatal(err)
	}
	return began.Time
}

// waitHoldDownCancelled waits until the last hold-down event STATE holds of w1 is its
// cancellation.
func waitHoldDownCancelled(t *testing.T, srv *eventstest.Server) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), srv.Stream(t, events.StreamState), events.HoldDownSubject("shop", "west", "w1"))
		return err == nil && ok && e.Type == events.TypeHoldDownCancelled
	}, "STATE never records w1's hold-down cancelled")
}

// overrideW1 records alice's override event typ on w1 for maintenance, action one a set takes,
// and returns its id and its sequence on STATE.
func overrideW1(t *testing.T, srv *eventstest.Server, typ, action string) (id string, seq uint64) {
	t.Helper()
	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: action, Reason: "maintenance", By: "alice@laptop"}
	e, _ := events.New(typ, "override/alice@laptop", time.Now(), o)
	ack, err := events.Publish(context.Background(), srv.JS, events.OverrideSubject("shop", "west", "w1"), e)
	if err != nil {
		t.Fatal(err)
	}
	return e.ID, ack.Sequence
}

// passUntilUp has w1 pass every 50 ms, as configured, until STATE records it up, and returns
// that transition and the time of the first pass; the test fails if w1 is not up within, given
// its hold-down of holdDown.
func passUntilUp(t *testing.T, srv *eventstest.Server, p *prober, within, holdDown time.Duration) (up events.Envelope, healthyAt time.Time) {
	t.Helper()
	p.send("shop", "west", "w1", true)
	healthyAt = stamp(t, srv, events.StreamProbes, p.lastSeq)
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	deadline := time.Now().Add(within)
	for {
		if up, ok := endpointUp(t, srv); ok {
			return up, healthyAt
		}
		if time.Now().After(deadline) {
			t.Fatalf("w1 not up %d s after its hold-down of %s began: STATE history %q", int(within/time.Second), holdDown, history(t, srv))
		}
		<-checks.C
		p.send("shop", "west", "w1", true)
	}
}

// passRestartingMidHoldDown has w1 pass every 50 ms, as configured (the results are the test's
// subject), until seen lists 4 entries, restarting d1 as decider/a under cfg once 2.3 s have
// passed since healthyAt; it returns when it restarted d1, zero if it did not. The test fails if
// seen, named what, has fewer after 10 s.
func passRestartingMidHoldDown(t *testing.T, srv *eventstest.Server, p *prober, d1 *replica, cfg *config.Config, healthyAt time.Time, what string, seen func() []string) (restartedAt time.Time) {
	t.Helper()
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(seen()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("w1 not up 10 s after its hold-down of 3s began: %s %q", what, seen())
		}
		<-checks.C
		if restartedAt.IsZero() && time.Since(healthyAt) > 2300*time.Millisecond {
			d1.stop()
			restartedAt = time.Now()
			start(t, srv.JS, cfg, "decider/a")
		}
		p.send("shop", "west", "w1", true)
	}
	return restartedAt
}

// wantUpAfterHoldDown fails the test unless w1's up transition up came its hold-down of 3s after
// its first pass at healthyAt, within 100ms.
func wantUpAfterHoldDown(t *testing.T, up events.Envelope, healthyAt time.Time) {
	t.Helper()
	if late := up.Time.Sub(healthyAt.Add(3 * time.Second)); late < 0 || late > 100*time.Millisecond {
		t.Errorf("w1 up at %s, %s after its first pass: want its hold-down of 3s, within 100ms", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// passUntilTransitions has w1 pass every 50 ms, as configured, until STATE holds n transitions
// of it, and returns them; the test fails after within, the transitions followed by after.
func passUntilTransitions(t *testing.T, srv *eventstest.Server, p *prober, n int, within time.Duration, after string) []string {
	t.Helper()
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	deadline := time.Now().Add(within)
	got := w1Transitions(t, srv)
	for ; len(got) < n; got = w1Transitions(t, srv) {
		if time.Now().After(deadline) {
			t.Fatalf("w1's transitions are %q %s", got, after)
		}
		<-checks.C
		p.send("shop", "west", "w1", true)
	}
	return got
}

// TestADeciderRestartedMidHoldDownNeverBringsTheEndpointUpEarly: w1 fails, then passes every
// 50 ms; its hold-down of 3s runs from its first pass. The decider is restarted 2.3 s into it,
// with stale_after 2s, so it reads back 2 s of PROBES only, which miss the pass the hold-down
// began with: it resumes the hold-down from the start STATE recorded
// (detour.endpoint.hold_down_started.v1), and w1 comes up 3 s after its first pass, as if no
// decider had restarted, and as detour replay decides it.
func TestADeciderRestartedMidHoldDownNeverBringsTheEndpointUpEarly(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	p.send("shop", "west", "w1", true)
	healthyAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	restartedAt := passRestartingMidHoldDown(t, srv, p, d1, cfg, healthyAt, "STATE history", func() []string { return history(t, srv) })
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
	if restartedAt.IsZero() {
		t.Fatal("w1 came up before the decider was restarted")
	}
	up, _ := endpointUp(t, srv)
	wantUpAfterHoldDown(t, up, healthyAt)
	if verdict, cause := replayedUp(t, srv, cfg); verdict != "same" || cause != up.Cause {
		t.Errorf("detour replay brings w1 up %s, caused by %s; STATE's up was caused by %s", verdict, cause, up.Cause)
	}
}

// TestAnOverrideSetAndClearedDuringAHoldDownLeavesItToEndOnTimeAcrossARestart: w1 fails, then
// passes every 50 ms; its hold-down of 3s runs from its first pass, and STATE records it begun.
// The operator forces w1 up and clears the override within the hold-down, so STATE records w1
// up and then down again, after the hold-down began. The decider is restarted 2.3 s into it,
// reading back 2 s of PROBES: it resumes the hold-down STATE recorded, and w1 comes up 3 s after
// its first pass, as if no decider had restarted, and as detour replay decides it.
func TestAnOverrideSetAndClearedDuringAHoldDownLeavesItToEndOnTimeAcrossARestart(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	passUntilRecorded(t, srv, p)
	healthyAt := holdDownBegan(t, srv)
	overrideW1(t, srv, events.TypeOverrideSet, events.ActionForceUp)
	p.send("shop", "west", "w1", true)
	overrideW1(t, srv, events.TypeOverrideCleared, "")
	p.send("shop", "west", "w1", true)
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = w1Transitions(t, srv)
		return len(got) == 3
	}, "w1's transitions are %q, want down, up by the override and down by its clearing", &got)
	if time.Since(healthyAt) > 2300*time.Millisecond {
		t.Skipf("the override was cleared %s after w1's first pass: this machine is too slow for the test", time.Since(healthyAt))
	}
	restartedAt := passRestartingMidHoldDown(t, srv, p, d1, cfg, healthyAt, "its transitions", func() []string { return w1Transitions(t, srv) })
	var up events.Envelope
	for _, s := range stateOf(t, srv) {
		if s.Subject == events.EndpointStateSubject("shop", "west", "w1") {
			up = s.Env
		}
	}
	if restartedAt.IsZero() {
		t.Fatal("w1 came up before the decider was restarted")
	}
	wantUpAfterHoldDown(t, up, healthyAt)
}

// TestAFailureAfterAHoldDownBeganCancelsItAcrossARestart: w1 fails, passes once (its hold-down
// begins), fails again (which ends it), and then no result comes for longer than the 2 s a
// starting decider reads back. The decider restarts and w1 passes again: its hold-down begins at
// that pass, not at the one before the failure, which STATE recorded as a hold-down begun.
func TestAFailureAfterAHoldDownBeganCancelsItAcrossARestart(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", false)
	failedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	eventstest.Eventually(t, 5*time.Second, func() bool { return d1.stats.Results.Load() == 3 }, "decider did not fold the 3 results")
	d1.stop()
	time.Sleep(time.Until(failedAt.Add(2500 * time.Millisecond))) // silence past the 2 s read back: the subject of the test, not a wait
	start(t, srv.JS, cfg, "decider/a")

	up, healthyAt := passUntilUp(t, srv, p, 10*time.Second, 3*time.Second)
	if late := up.Time.Sub(healthyAt.Add(3 * time.Second)); late < 0 || late > 100*time.Millisecond {
		t.Errorf("w1 up at %s, %s after its first pass since the restart: want its hold-down of 3s, within 100ms", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// TestTwoReplicasRecordOneHoldDownBegun: both replicas fold the pass that begins w1's hold-down
// and append its start; its id derives from that pass, so STATE keeps one copy.
func TestTwoReplicasRecordOneHoldDownBegun(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	a := start(t, srv.JS, cfg, "decider/a")
	b := start(t, srv.JS, cfg, "decider/b")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	pass := passUntilRecorded(t, srv, p)
	n := uint64(p.n)
	eventstest.Eventually(t, 5*time.Second, func() bool { return a.stats.Results.Load() == n && b.stats.Results.Load() == n },
		"the replicas did not both fold the passes")
	ctx := context.Background()
	st := srv.Stream(t, events.StreamState)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.HoldDownSubject("shop", "west", "w1")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[events.HoldDownSubject("shop", "west", "w1")]; n != 1 {
		var got []string
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			if m, err := st.GetMsg(ctx, seq); err == nil && m.Subject == events.HoldDownSubject("shop", "west", "w1") {
				e, _ := events.Decode(m.Data)
				got = append(got, e.Type+" "+e.Source+" "+e.Cause+" "+e.ID+" "+e.Time.String())
			}
		}
		t.Fatalf("STATE holds %d hold-down events of w1, want 1: %q", n, got)
	}
	e, _, ok, err := events.Last(ctx, st, events.HoldDownSubject("shop", "west", "w1"))
	if err != nil || !ok || e.Type != events.TypeHoldDownStarted || e.Cause != pass {
		t.Fatalf("last hold-down event %+v (found %v, %v), want hold_down_started caused by %s", e, ok, err, pass)
	}
}

// TestAHoldDownThatRanOutUnderAnOverrideIsNotResumedAfterALaterFailure: w1 is down and forced
// down; it passes for longer than its hold-down of 1.5s (which runs out under the override, so
// no up transition follows), fails, and the operator clears the override: w1 stays down. The
// decider restarts after a silence longer than the 2 s it reads back, and w1 passes once: that
// pass begins a new hold-down, the endpoint is not brought up at once by the one that ran out
// before the failure, which STATE still recorded as begun.
func TestAHoldDownThatRanOutUnderAnOverrideIsNotResumedAfterALaterFailure(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(holdDownYAML(), "hold_down: 3s", "hold_down: 1500ms", 1))
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	override := func(typ, action string) {
		t.Helper()
		_, seq := overrideW1(t, srv, typ, action)
		eventstest.Eventually(t, 5*time.Second, func() bool { return d1.stats.StateSeq.Load() >= seq }, "decider did not read the override")
	}
	override(events.TypeOverrideSet, events.ActionForceDown)

	p.send("shop", "west", "w1", true)
	ranOut := stamp(t, srv, events.StreamProbes, p.lastSeq).Add(1700 * time.Millisecond)
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	for time.Now().Before(ranOut) {
		<-checks.C
		p.send("shop", "west", "w1", true)
	}
	p.send("shop", "west", "w1", false)
	failedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	n := uint64(p.n)
	eventstest.Eventually(t, 5*time.Second, func() bool { return d1.stats.Results.Load() == n }, "decider did not fold the %d results", n)
	override(events.TypeOverrideCleared, "")
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	d1.stop()
	time.Sleep(time.Until(failedAt.Add(2500 * time.Millisecond))) // silence past the 2 s read back: the subject of the test, not a wait
	start(t, srv.JS, cfg, "decider/a")

	up, healthyAt := passUntilUp(t, srv, p, 5*time.Second, 1500*time.Millisecond)
	if up.Time.Before(healthyAt.Add(1500 * time.Millisecond)) {
		t.Errorf("w1 up at %s, %s after its first pass since it failed: before its hold-down of 1.5s", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// TestAHoldDownCancelledWhileNoDeciderRanIsNotResumedByTheNextButOne: w1 fails and passes once
// (its hold-down of 3s begins, and STATE records it); the decider stops and w1 fails again. The
// next decider reads that failure back as it starts, so its view holds no hold-down, and it
// records the cancellation. It stops too, and after a silence longer than the 2 s a starting
// decider reads back, a third starts and w1 passes: a new hold-down begins at that pass; w1 is
// not brought up at once by the one the failure cancelled.
func TestAHoldDownCancelledWhileNoDeciderRanIsNotResumedByTheNextButOne(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	passUntilRecorded(t, srv, p)
	d.stop()
	p.send("shop", "west", "w1", false)
	failedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	d = start(t, srv.JS, cfg, "decider/a")
	eventstest.Eventually(t, 5*time.Second, func() bool { return d.stats.Results.Load() > 0 }, "decider did not read back the results")
	waitHoldDownCancelled(t, srv)
	d.stop()
	time.Sleep(time.Until(failedAt.Add(2500 * time.Millisecond))) // silence past the 2 s read back: the subject of the test, not a wait
	start(t, srv.JS, cfg, "decider/a")

	up, healthyAt := passUntilUp(t, srv, p, 10*time.Second, 3*time.Second)
	if up.Time.Before(healthyAt.Add(3 * time.Second)) {
		t.Errorf("w1 up at %s, %s after its first pass since it failed: before its hold-down of 3s", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// refusedCancel is JetStream refusing the first hold-down cancellation appended, as a STATE that
// lost its quorum for a moment answers: the future resolves with an error.
type refusedCancel struct {
	jetstream.JetStream
	refused atomic.Bool
}

func (w *refusedCancel) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if !bytes.Contains(m.Data, []byte(events.TypeHoldDownCancelled)) || w.refused.Swap(true) {
		return w.JetStream.PublishMsgAsync(m, opts...)
	}
	f := &refused{msg: m, err: make(chan error, 1)}
	f.err <- errors.New("nats: no response from stream")
	return f, nil
}

// refused is an append's future answered with an error.
type refused struct {
	msg *nats.Msg
	err chan error
}

func (f *refused) Ok() <-chan *jetstream.PubAck { return nil }
func (f *refused) Err() <-chan error            { return f.err }
func (f *refused) Msg() *nats.Msg               { return f.msg }

// TestAHoldDownCancellationSTATERefusedIsAppendedAgain: w1 fails, passes once (its hold-down of
// 3s begins), and fails again for a while; STATE refuses the cancellation the first time. The
// decider appends it again, so that a decider starting after a silence longer than the 2 s it
// reads back begins a new hold-down at w1's next pass, instead of resuming the cancelled one and
// bringing w1 up at once.
func TestAHoldDownCancellationSTATERefusedIsAppendedAgain(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	w := &refusedCancel{JetStream: srv.JS}
	d := start(t, w, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	passUntilRecorded(t, srv, p)
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	for range 10 { // failing, checked every 50 ms as configured
		<-checks.C
		p.send("shop", "west", "w1", false)
	}
	failedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	n := uint64(p.n)
	eventstest.Eventually(t, 5*time.Second, func() bool { return d.stats.Results.Load() == n && w.refused.Load() },
		"decider did not fold the %d results and append the cancellation", n)
	waitHoldDownCancelled(t, srv)
	d.stop()
	time.Sleep(time.Until(failedAt.Add(2500 * time.Millisecond))) // silence past the 2 s read back: the subject of the test, not a wait
	start(t, srv.JS, cfg, "decider/a")

	up, healthyAt := passUntilUp(t, srv, p, 10*time.Second, 3*time.Second)
	if up.Time.Before(healthyAt.Add(3 * time.Second)) {
		t.Errorf("w1 up at %s, %s after its first pass since it failed: before its hold-down of 3s", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// TestAHoldDownBegunAtAnEndpointsOldAddressIsNotResumedAtItsNewOne: w1 fails and passes (its
// hold-down of 3s begins, and STATE records it); the operator moves w1 to a new address and the
// decider restarts with that configuration, after a silence longer than the 2 s it reads back.
// The new address's first pass begins its own hold-down: it is not brought up at once by the one
// its old address began, as a decider applying the move without a restart decides it.
func TestAHoldDownBegunAtAnEndpointsOldAddressIsNotResumedAtItsNewOne(t *testing.T) {
	srv := eventstest.Start(t)
	d := start(t, srv.JS, eventstest.Config(t, holdDownYAML()), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	passUntilRecorded(t, srv, p)
	passedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	d.stop()
	time.Sleep(time.Until(passedAt.Add(2500 * time.Millisecond))) // silence past the 2 s read back: the subject of the test, not a wait
	start(t, srv.JS, eventstest.Config(t, strings.Replace(holdDownYAML(), "127.0.0.11:8081", "127.0.0.21:8081", 1)), "decider/a")

	up, healthyAt := passUntilUp(t, srv, p, 10*time.Second, 3*time.Second)
	if up.Time.Before(healthyAt.Add(3 * time.Second)) {
		t.Errorf("w1 up at %s, %s after its new address's first pass: before its hold-down of 3s", up.Time.Format(time.RFC3339Nano), up.Time.Sub(healthyAt))
	}
}

// TestAnEndpointFlappingWithinItsHoldDownAppendsNothing: w1 is down and flaps, a pass and a
// failure every 50 ms for a second, within its hold-down of 3s: no streak of passes lasts long
// enough for a starting decider to miss its beginning in the 2 s of PROBES it reads back, so
// STATE records no hold-down of it. STATE refuses appends once its reserve is full: a record per
// flap would have a few flapping endpoints fill it, and stop every failover.
func TestAnEndpointFlappingWithinItsHoldDownAppendsNothing(t *testing.T) {
	srv := eventstest.Start(t)
	d := start(t, srv.JS, eventstest.Config(t, holdDownYAML()), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	for i := range 20 {
		<-checks.C
		p.send("shop", "west", "w1", i%2 == 1)
	}
	n := uint64(p.n)
	eventstest.Eventually(t, 5*time.Second, func() bool { return d.stats.Results.Load() == n }, "decider did not fold the %d results", n)
	ctx := context.Background()
	info, err := srv.Stream(t, events.StreamState).Info(ctx, jetstream.WithSubjectFilter(events.HoldDownSubject("shop", "west", "w1")))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[events.HoldDownSubject("shop", "west", "w1")]; got != 0 {
		t.Errorf("STATE holds %d hold-down events of w1 after 10 flaps of 50 ms, want none", got)
	}
}

// TestAHoldDownEndsOnTimeAcrossARestartAfterTheReadBackWindowShrank: the decider starts under a
// configuration with stale_after 1h, so it reads back an hour of PROBES, and the operator applies
// one with stale_after 2s and a hold_down of 3s. w1 fails, then passes every 50 ms; the decider
// is restarted 2.3 s into the hold-down, reading back 2 s: STATE records the start (at half the
// read-back of the configuration in force, not of the one the decider started with), and w1
// comes up 3 s after its first pass.
func TestAHoldDownEndsOnTimeAcrossARestartAfterTheReadBackWindowShrank(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	configs := make(chan *config.Config)
	d1 := start(t, srv.JS, eventstest.Config(t, strings.Replace(holdDownYAML(), "stale_after: 2s", "stale_after: 1h", 1)), "decider/a",
		func(o *decider.Options) { o.Configs = configs })
	configs <- cfg
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	p.send("shop", "west", "w1", true)
	healthyAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	restartedAt := passRestartingMidHoldDown(t, srv, p, d1, cfg, healthyAt, "STATE history", func() []string { return history(t, srv) })
	if restartedAt.IsZero() {
		t.Fatal("w1 came up before the decider was restarted")
	}
	up, _ := endpointUp(t, srv)
	wantUpAfterHoldDown(t, up, healthyAt)
}

// TestAForceUpInForceAcrossARestartDuringAHoldDownLeavesTheEndpointHeldDown: w1 fails, then
// passes every 50 ms; its hold-down of 5s runs from its first pass, and STATE records it begun.
// The operator forces w1 up, and the decider is restarted 2.5 s into the hold-down, reading back
// 2 s of PROBES (which miss its first pass) while the override is in force. The operator then
// clears the override before the hold-down ends: w1 goes down, as a decider that never restarted
// takes it, and comes up 5 s after its first pass.
func TestAForceUpInForceAcrossARestartDuringAHoldDownLeavesTheEndpointHeldDown(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(holdDownYAML(), "hold_down: 3s", "hold_down: 5s", 1))
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	passUntilRecorded(t, srv, p)
	healthyAt := holdDownBegan(t, srv)
	overrideW1(t, srv, events.TypeOverrideSet, events.ActionForceUp)
	checks := time.NewTicker(50 * time.Millisecond)
	defer checks.Stop()
	for time.Since(healthyAt) < 2500*time.Millisecond {
		<-checks.C
		p.send("shop", "west", "w1", true)
	}
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = w1Transitions(t, srv)
		return len(got) == 2
	}, "w1's transitions are %q, want down, then up by the override", &got)
	d1.stop()
	start(t, srv.JS, cfg, "decider/a")
	cleared, _ := overrideW1(t, srv, events.TypeOverrideCleared, "")
	if time.Since(healthyAt) > 4*time.Second {
		t.Skipf("the override was cleared %s after w1's first pass: this machine is too slow for the test", time.Since(healthyAt))
	}
	got = passUntilTransitions(t, srv, p, 4, 10*time.Second,
		"10 s after its hold-down of 5s began: want down, up by the override, down by its clearing, up once the hold-down ended")
	if !strings.HasPrefix(got[2], "down ") || !strings.HasSuffix(got[2], " caused by "+cleared) {
		t.Errorf("w1's transitions are %q: want the override's clearing (%s) to take it down, as its hold-down had not ended", got, cleared)
	}
	up := stateOf(t, srv)
	var upAt time.Time
	for _, s := range up {
		if s.Subject == events.EndpointStateSubject("shop", "west", "w1") && s.Env.Type == events.TypeEndpointUp {
			upAt = s.Env.Time
		}
	}
	if late := upAt.Sub(healthyAt.Add(5 * time.Second)); late < 0 || late > 100*time.Millisecond {
		t.Errorf("w1 last up at %s, %s after its first pass: want its hold-down of 5s, within 100ms", upAt.Format(time.RFC3339Nano), upAt.Sub(healthyAt))
	}
}

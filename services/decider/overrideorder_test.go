package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
	"github.com/nats-io/nats.go/jetstream"
)

// lateProbes is JetStream whose PROBES consumers deliver each message delay after it was stored,
// as a PROBES leader on a busy node does, while STATE delivers at once.
type lateProbes struct {
	jetstream.JetStream
	delay time.Duration
}

func (l lateProbes) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := l.JetStream.Stream(ctx, name)
	if err != nil || name != events.StreamProbes {
		return s, err
	}
	return lateStream{s, l.delay}, nil
}

type lateStream struct {
	jetstream.Stream
	delay time.Duration
}

func (l lateStream) CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := l.Stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return lateConsumer{c, l.delay}, nil
}

type lateConsumer struct {
	jetstream.Consumer
	delay time.Duration
}

func (l lateConsumer) Messages(opts ...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	it, err := l.Consumer.Messages(opts...)
	if err != nil {
		return nil, err
	}
	return lateMessages{it, l.delay}, nil
}

type lateMessages struct {
	jetstream.MessagesContext
	delay time.Duration
}

func (l lateMessages) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	m, err := l.MessagesContext.Next(opts...)
	if err != nil {
		return m, err
	}
	if md, err := m.Metadata(); err == nil {
		time.Sleep(time.Until(md.Timestamp.Add(l.delay))) // the late delivery is the test's subject
	}
	return m, nil
}

// TestAnOverrideClearedJustAfterTheResultThatTookItsEndpointDownLeavesItDown: w1 is forced down
// while its probes pass; it fails three times, and the operator clears the override just after
// the third failure was stored. As STATE stores them, and as detour replay re-decides them, the
// failures took w1 down before the override was cleared: it stays down. PROBES delivers 100 ms
// late, STATE at once: the decider applied the clear first, brought w1 and its pool up on the
// probes it had folded, and took them down again a second later when it re-asserted its view.
func TestAnOverrideClearedJustAfterTheResultThatTookItsEndpointDownLeavesItDown(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	r := start(t, lateProbes{srv.JS, 100 * time.Millisecond}, eventstest.Config(t, shopYAML), "decider/a")
	w := &prober{t: t, js: srv.JS, region: "eu"}
	w.send("shop", "west", "w1", true)
	w.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "alice@box", Reason: "deploy", Action: events.ActionForceDown}
	if err := override.Set(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	for range 3 {
		w.send("shop", "west", "w1", false)
	}
	o.Action, o.Reason = "", "deployed"
	if err := override.Clear(ctx, srv.JS, o); err != nil {
		t.Fatal(err)
	}
	// e1's results, stored after the clear, are decided after it: once e1 is up, the clear was
	// applied, and w1's transitions it made are stored.
	e := &prober{t: t, js: srv.JS, region: "eu"}
	e.send("shop", "east", "e1", true)
	e.send("shop", "east", "e1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.east.e1:up", "pool.shop.east:up")
	if n := r.stats.Reasserted.Load(); n != 0 {
		t.Errorf("the decider re-asserted %d contradictions, want none", n)
	}
}

// TestAHeldOverrideComesBeforeTheDeadlinesAfterIt: w1, down, passes (hold_down 400ms), and 250
// ms later e1 passes and the operator forces w1 down. The override waits for e1's result, which
// PROBES delivers 250 ms late, past the end of w1's hold-down; as detour replay re-decides them,
// the override came first and w1 never came up. Ticks every 10 ms came meanwhile: the decider
// let time pass beyond the override it held, and recorded w1 up, then down by the override.
func TestAHeldOverrideComesBeforeTheDeadlinesAfterIt(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, "fall: 3, rise: 2", "fall: 1, rise: 1", 1)
	doc = strings.Replace(doc, "    pools:", "    hold_down: 400ms\n    pools:", 1)
	start(t, lateProbes{srv.JS, 250 * time.Millisecond}, eventstest.Config(t, doc), "decider/a",
		func(o *decider.Options) { o.TickEvery = 10 * time.Millisecond })
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	p.send("shop", "west", "w1", true)
	passedAt := stamp(t, srv, events.StreamProbes, p.lastSeq)
	for time.Since(passedAt) < 250*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // e1's result comes after w1's pass was delivered: the subject of the test, not a wait
	}
	p.send("shop", "east", "e1", true)
	o := events.Override{App: "shop", Pool: "west", Endpoint: "w1", By: "alice@box", Reason: "deploy", Action: events.ActionForceDown}
	if err := override.Set(context.Background(), srv.JS, o); err != nil {
		t.Fatal(err)
	}
	if set := stateOf(t, srv)[2].Env.Time; !set.Before(passedAt.Add(400 * time.Millisecond)) {
		t.Skipf("the override came %s after w1's pass, after its hold-down: this machine is too slow for the test", set.Sub(passedAt))
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.east.e1:up", "pool.shop.east:up")
}

// TestADrillRolledBackJustAfterTheResultThatTookItsPoolDownLeavesItDown: a drill simulates the
// failure of shop/west while w1's probes pass; w1 then fails three times, and the drill is rolled
// back just after the third failure was stored. As the streams hold them, and as detour replay
// re-decides them, the failures took w1 down before the rollback: it stays down, re-stated as
// the probes' at the rollback (decide.DrillOutlived). PROBES delivers 100 ms late, DRILLS at
// once: the decider rolled the drill back first, brought w1 and its pool up on the passes it had
// folded, and took them down again on the failures after.
func TestADrillRolledBackJustAfterTheResultThatTookItsPoolDownLeavesItDown(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, lateProbes{srv.JS, 100 * time.Millisecond}, eventstest.Config(t, shopYAML), "decider/a")
	w := &prober{t: t, js: srv.JS, region: "eu"}
	w.send("shop", "west", "w1", true)
	w.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	for range 3 {
		w.send("shop", "west", "w1", false)
	}
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	// e1's results, stored after the rollback, are decided after it: once e1 is up, the
	// rollback was applied, and w1's transitions it made are stored.
	e := &prober{t: t, js: srv.JS, region: "eu"}
	e.send("shop", "east", "e1", true)
	e.send("shop", "east", "e1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.east.e1:up", "pool.shop.east:up")
	if n := r.stats.Reasserted.Load(); n != 0 {
		t.Errorf("the decider re-asserted %d contradictions, want none", n)
	}
}

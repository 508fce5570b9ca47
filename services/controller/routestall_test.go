package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAControllerWhoseRoutesGoUnansweredTakesEveryTickAtOnce: ROUTES takes an edge's 10,000
// routes and answers none (its leader took them and hung, or the client holds them while it
// reconnects).
// The controller gives up on a route after storeTimeout and sends it again, but nats.go keeps
// the route it gave up on pending for events.AsyncAckTimeout: with the ones sent again, more
// than the 4,000 it holds without stalling were pending, and each route sent past that stalled
// the controller's loop 200 ms, for seconds: no tick, no edge liveness, no drill meanwhile.
func TestAControllerWhoseRoutesGoUnansweredTakesEveryTickAtOnce(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	// ROUTES exists, but holds other subjects: whatever takes the routes' subjects answers nothing.
	if err := ns.JS.DeleteStream(ctx, events.StreamRoutes); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.JS.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamRoutes, Subjects: []string{"elsewhere.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	hole := eventstest.Connect(t, ns.URL)
	var taken atomic.Int64
	sub, err := hole.Subscribe(events.SubjectRoutes, func(*nats.Msg) { taken.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := hole.Flush(); err != nil {
		t.Fatal(err)
	}

	ticks := make(chan time.Time)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: eventstest.Config(t, bigEdgeDoc(10000)), Name: "controller-1",
			Ticks: ticks, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	})
	eventstest.Eventually(t, 30*time.Second, func() bool { return taken.Load() >= maxRoutesInFlight }, "the controller sends as many routes as it keeps in flight")
	// Each route sent is given up on after storeTimeout and sent again; nats.go forgets it
	// AsyncAckTimeout after it was sent. Over that span and more, every tick is taken at once.
	start, worst := time.Now(), time.Duration(0)
	for time.Since(start) < events.AsyncAckTimeout+2*storeTimeout {
		sent := time.Now()
		select {
		case ticks <- sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("the controller took no tick for 10s")
		}
		worst = max(worst, time.Since(sent))
	}
	t.Logf("the slowest tick was taken %s after it came", worst.Round(time.Millisecond))
	if limit := time.Second; worst > limit {
		t.Errorf("a tick was taken %s after it came, want within %s: the loop stalled sending routes", worst.Round(time.Millisecond), limit)
	}
}

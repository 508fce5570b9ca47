package controller

import (
	"context"
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

// startDrill records the start of a drill of no step with lease, as a runner does.
func startDrill(t *testing.T, js jetstream.JetStream, id string, lease time.Duration) {
	t.Helper()
	e, err := events.New(events.TypeDrillStarted, "drill/tester", time.Now(), events.DrillStarted{ID: id, Name: id, By: "tester",
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: lease.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js, events.DrillSubject(id), e); err != nil {
		t.Fatal(err)
	}
}

// twoEdgesUnderAController starts a controller whose client finds the stream under prefix
// electing once js.On is set, and edge-west and edge-east heartbeating every 100ms until both
// are up; closing stopWest stops edge-west's heartbeats.
func twoEdgesUnderAController(t *testing.T, prefix string) (ns *eventstest.Server, js *eventstest.Electing, stopWest chan struct{}) {
	t.Helper()
	ns = eventstest.Start(t)
	cfg := eventstest.Config(t, edgesDoc)
	js = eventstest.NewElecting(ns.JS, prefix, true)
	stopWest = make(chan struct{})
	beat(t, ns, "edge-west", 100*time.Millisecond, stopWest)
	beat(t, ns, "edge-east", 100*time.Millisecond, make(chan struct{}))
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-west"))) == "U" &&
			types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-east"))) == "U"
	}, "both edges up")
	return ns, js, stopWest
}

// edgeWestGoesDownWithin stops edge-west's heartbeats and asserts that the controller records it
// down within fall × interval, its tolerance and slack, though the stream named electing elects.
func edgeWestGoesDownWithin(t *testing.T, ns *eventstest.Server, stopWest chan struct{}, slack time.Duration, electing string) {
	t.Helper()
	close(stopWest)
	died := time.Now()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, events.EdgeStateSubject("edge-west"))) == "UD"
	}, "edge-west down")
	if took, limit := time.Since(died), 3*100*time.Millisecond+Tolerance(100*time.Millisecond)+slack; took > limit {
		t.Errorf("edge-west down %s after its last heartbeat, want within %s: the controller waited for %s", took.Round(time.Millisecond), limit, electing)
	}
}

func TestEdgesAreDecidedOnTimeWhileDRILLSElectsALeader(t *testing.T) {
	ns, js, stopWest := twoEdgesUnderAController(t, "detour.drill.")

	// A drill runs; then DRILLS loses its leader, so its runner's renewals are not stored and
	// its lease lapses: the controller tries to roll it back and gets no answer.
	js.On.Store(true)
	startDrill(t, ns.JS, "d1", 300*time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the controller tries to roll the drill back")

	// Meanwhile edge-west dies: the controller records it down fall × interval later, as ever.
	edgeWestGoesDownWithin(t, ns, stopWest, 500*time.Millisecond, "DRILLS")
}

func TestADrillIsNotRolledBackForRenewalsDRILLSCouldNotStore(t *testing.T) {
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, edgesDoc)
	js := eventstest.NewElecting(ns.JS, "detour.drill.", false)
	runner := &eventstest.Electing{JetStream: ns.JS, Prefix: "detour.drill.", On: js.On}
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	const lease = 300 * time.Millisecond
	startDrill(t, ns.JS, "d1", lease)
	// The runner renews every third of its lease, through the same cluster as the controller.
	ctx, cancel := context.WithCancel(t.Context())
	renewing := make(chan struct{})
	go func() {
		defer close(renewing)
		tick := time.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			e, err := events.New(events.TypeDrillRenewed, "drill/tester", time.Now(), events.DrillRenewed{By: "tester"})
			if err != nil {
				t.Error(err)
				return
			}
			rctx, rcancel := context.WithTimeout(ctx, lease/3)
			_, _ = events.Publish(rctx, runner, events.DrillSubject("d1"), e)
			rcancel()
		}
	}()
	defer func() { cancel(); <-renewing }()

	last := func() string {
		e, _, _, err := events.Last(context.Background(), ns.Stream(t, events.StreamDrills), events.DrillSubject("d1"))
		if err != nil {
			t.Fatal(err)
		}
		return e.Type
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return last() == events.TypeDrillRenewed }, "the runner renews")

	// DRILLS elects a leader: neither the runner's renewals nor the controller's rollbacks are
	// stored. It has one again just after a renewal failed: the runner's next one is a third of a
	// lease away, and the drill goes on.
	js.On.Store(true)
	eventstest.Eventually(t, 10*time.Second, func() bool { return js.Refused.Load() >= 3 }, "the controller tries to roll the drill back")
	renewals := runner.Refused.Load()
	eventstest.Eventually(t, 5*time.Second, func() bool { return runner.Refused.Load() > renewals }, "the runner tries to renew")
	js.On.Store(false)
	back := time.Now()
	for time.Since(back) < 3*lease {
		if typ := last(); typ == events.TypeDrillRolledBack {
			t.Fatalf("the drill was rolled back %s after DRILLS had a leader again: its runner renews all along",
				time.Since(back).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEdgesAreDecidedOnTimeWhileROUTESElectsALeader(t *testing.T) {
	ns, js, stopWest := twoEdgesUnderAController(t, "detour.routes.")

	// ROUTES loses its leader while shop's routes change: they cannot be stored, and are tried
	// again and again.
	js.On.Store(true)
	recordW1Down(t, ns)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the controller tries to store the new routes")

	// edge-west dies just as the controller sends them: it is down fall × interval later, as ever.
	sent := js.Refused.Load()
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > sent }, "the controller tries the routes again")
	edgeWestGoesDownWithin(t, ns, stopWest, 400*time.Millisecond, "ROUTES")
}

func TestRouteTablesFollowSTATEWhileManyEdgesWaitForSTATEToTakeTheirTransitions(t *testing.T) {
	// Eight edges heartbeat while STATE, for the controller, has no leader: each edge's "up"
	// is due at every tick and none can be stored. Before, the loop waited a second for each
	// answer in turn, eight seconds a tick, and the route tables waited behind them.
	const edges = 8
	ns, js, doc := edgesHeartbeatingWhileSTATEElects(t, edges)
	routeFollowsW1Down(t, ns, js, doc, func() bool { return js.Refused.Load() >= edges }, 500*time.Millisecond, "on STATE for the edges' transitions")
}

// routeFollowsW1Down runs a controller on js over doc, waits for edge-0's first route for shop
// and until tried (the edges' transitions attempted), then records w1 down as the decider would,
// through its own client, and fails unless edge-0's route follows within limit.
func routeFollowsW1Down(t *testing.T, ns *eventstest.Server, js jetstream.JetStream, doc string, tried func() bool, limit time.Duration, waitedOn string) {
	t.Helper()
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: eventstest.Config(t, doc), Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	route := events.AppRouteSubject("edge-0", "shop")
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, route)) > 0 }, "edge-0's first route for shop")
	eventstest.Eventually(t, 10*time.Second, tried, "the edges' transitions tried")

	before := len(history(t, ns, events.StreamRoutes, route))
	recordW1Down(t, ns)
	stored := time.Now()
	eventstest.Eventually(t, 15*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, route)) > before }, "edge-0's route after w1 went down")
	if took := time.Since(stored); took > limit {
		t.Errorf("edge-0's route changed %s after w1 went down, want within %s: the controller waited %s",
			took.Round(time.Millisecond), limit, waitedOn)
	}
}

// recordW1Down stores shop's endpoint w1 down on STATE, as the decider would.
func recordW1Down(t *testing.T, ns *eventstest.Server) {
	t.Helper()
	e, err := events.New(events.TypeEndpointDown, "decider-test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
}

func TestAnElectionOfSTATELogsTheEdgesFailedTransitionsOnceNotOncePerEdgeAndAttempt(t *testing.T) {
	// Eight edges heartbeat while STATE, for the controller, has no leader: each edge's "up" is
	// tried again once its attempt goes unanswered. Before, each failed attempt logged an error
	// line: eight a second, for as long as the election lasts.
	const edges = 8
	_, js, doc := edgesHeartbeatingWhileSTATEElects(t, edges)
	var logs eventstest.Logs
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: eventstest.Config(t, doc), Name: "controller-1", Log: zerolog.New(&logs)})
	})
	eventstest.Eventually(t, 10*time.Second, func() bool { return js.Refused.Load() >= 3*edges }, "each edge's transition tried three times")
	if n := logs.Count("edge transition not appended; the next tick tries again"); n > 1 {
		t.Errorf("%d lines for %d failed attempts, want one (with a count of the others held back)", n, js.Refused.Load())
	}
}

func TestAnEdgeSilentWhileAnotherEdgesDownIsUnansweredIsNotRecordedDown(t *testing.T) {
	// A JetStream node dies: STATE elects a leader, and the edges connected through that node
	// are silent until they reconnect. Their silence says nothing: when STATE does not take the
	// first down, edge liveness pauses. Before, the downs that fell due while that first one
	// waited for its answer were sent beside it, and one sent after the election ended was
	// stored: an edge that never stopped was recorded down.
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.state.", true)
	var westLost, eastLost atomic.Bool
	beating(t, ns, "edge-west", 100*time.Millisecond, nil, &westLost)
	beating(t, ns, "edge-east", 100*time.Millisecond, nil, &eastLost)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: js, Config: eventstest.Config(t, edgesDoc), Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return types(history(t, ns, events.StreamState, west)) == "U" && types(history(t, ns, events.StreamState, east)) == "U"
	}, "both edges up")

	// STATE elects; edge-west's heartbeats are lost, and its down goes unanswered (for
	// storeTimeout). The election ends; then edge-east's heartbeats are lost too, for less
	// than the pause an unanswered down grants.
	js.On.Store(true)
	westLost.Store(true)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "edge-west's down sent")
	js.On.Store(false)
	eastLost.Store(true)
	lost := time.Now()
	for time.Since(lost) < storeTimeout+500*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the edges reconnect after this long
	}
	westLost.Store(false)
	eastLost.Store(false)
	back := time.Now()
	for time.Since(back) < time.Second {
		if got := types(history(t, ns, events.StreamState, east)); got != "U" {
			t.Fatalf("edge-east history %q, want the single up: its silence began while STATE had not answered edge-west's down", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := types(history(t, ns, events.StreamState, west)); got != "U" {
		t.Errorf("edge-west history %q, want the single up: STATE never took its down", got)
	}
}

// edgesHeartbeatingWhileSTATEElects starts JetStream and n edges (edgesHeartbeating), and
// returns a client for which STATE has no leader and the configuration that lists the edges.
func edgesHeartbeatingWhileSTATEElects(t *testing.T, n int) (*eventstest.Server, *eventstest.Electing, string) {
	t.Helper()
	ns, doc := edgesHeartbeating(t, n)
	js := eventstest.NewElecting(ns.JS, "detour.state.", true)
	js.On.Store(true)
	return ns, js, doc
}

// edgesHeartbeating starts JetStream and n edges, edge-0 to edge-(n-1), each fronting shop and
// heartbeating every 100ms, and returns the configuration that lists the edges.
func edgesHeartbeating(t *testing.T, n int) (*eventstest.Server, string) {
	t.Helper()
	doc := edgesDoc[:strings.Index(edgesDoc, "edges:")] + "edges:\n"
	for i := range n {
		doc += fmt.Sprintf("  - {name: edge-%d, region: us-west, hostname: edge-%d.demo.test, address: 127.0.0.%d,\n"+
			"     heartbeat: {interval: 100ms, fall: 3}, apps: [{app: shop, listen: \"127.0.0.%d:8080\", secondary: edge-%d}]}\n",
			i, i, 30+i, 30+i, (i+1)%n)
	}
	ns := eventstest.Start(t)
	for i := range n {
		beat(t, ns, fmt.Sprintf("edge-%d", i), 100*time.Millisecond, make(chan struct{}))
	}
	return ns, doc
}

// conflicting is a JetStream client for which another replica has always appended to an
// edge's STATE subject first, and whose re-reads of a STATE subject go unanswered (as while
// STATE elects a leader), each waiting as nats.go's does when its context has no deadline.
type conflicting struct {
	jetstream.JetStream
	conflicts atomic.Int64
}

func (c *conflicting) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if strings.HasPrefix(m.Subject, "detour.state.edge.") {
		c.conflicts.Add(1)
		return nil, &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}
	}
	return c.JetStream.PublishMsg(ctx, m, opts...)
}

func (c *conflicting) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := c.JetStream.Stream(ctx, name)
	if err != nil || name != events.StreamState {
		return s, err
	}
	return unansweredGets{s}, nil
}

// unansweredGets is a stream whose last message per subject is asked for and never comes.
type unansweredGets struct{ jetstream.Stream }

func (unansweredGets) GetLastMsgForSubject(ctx context.Context, _ string) (*jetstream.RawStreamMsg, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(5 * time.Second):
		return nil, context.DeadlineExceeded
	}
}

func TestRouteTablesFollowSTATEWhileEdgeTransitionsConflictAndTheirSubjectsCannotBeReRead(t *testing.T) {
	// Another replica got to each edge's subject first, and reading the subject again goes
	// unanswered. Before, each re-read ran in the controller's loop with nats.go's 5 s default,
	// one after the other, and the route tables waited behind them.
	const edges = 4
	ns, doc := edgesHeartbeating(t, edges)
	js := &conflicting{JetStream: ns.JS}
	// Each re-read the old loop waited for took 5 s; the margin is for a loaded CI machine.
	routeFollowsW1Down(t, ns, js, doc, func() bool { return js.conflicts.Load() >= edges }, 2*time.Second, "on its re-reads of STATE")
}

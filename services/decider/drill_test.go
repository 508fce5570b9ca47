package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// drillEvent records one event of drill id on DRILLS and returns its sequence there.
func drillEvent(t *testing.T, srv *eventstest.Server, id, typ string, data any) uint64 {
	t.Helper()
	e, err := events.New(typ, "drill/test", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), srv.JS, events.DrillSubject(id), e)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func startDrill(t *testing.T, srv *eventstest.Server, id string, f events.Failure) {
	t.Helper()
	drillEvent(t, srv, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: id, By: "test", RollbackAt: time.Now().Add(time.Hour)})
	drillEvent(t, srv, id, events.TypeDrillStepStarted, events.DrillStep{Step: "fail " + f.String(), Failures: []events.Failure{f}})
}

func TestADrilledPoolIsSeenDownUntilTheDrillRollsBack(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "local"}
	west.send("shop", "west", "w1", true)
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	last := stateOf(t, srv)[2]
	var tr events.Transition
	if err := last.Env.Payload(&tr); err != nil || !strings.HasPrefix(tr.Reason, "drill d1: simulated failure of pool shop/west") {
		t.Errorf("the drilled transition's reason is %q (%v)", tr.Reason, err)
	}
	west.send("shop", "west", "w1", true) // probes still pass: the failure is simulated

	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
}

func TestADrilledRegionStopsVoting(t *testing.T) {
	srv := eventstest.Start(t)
	// Every voting region must see the endpoint up (quorum 1); a silent region stops voting
	// after 750ms.
	doc := strings.Replace(strings.Replace(shopYAML, "stale_after: 1h", "stale_after: 750ms", 1),
		"interval: 1s, timeout: 500ms", "interval: 250ms, timeout: 200ms", 1)
	doc = "regions: [us-west, us-east]\n" + strings.Replace(doc, "    check:", "    quorum: 1\n    check:", 1)
	start(t, srv.JS, eventstest.Config(t, doc), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "us-west"}
	east := &prober{t: t, js: srv.JS, region: "us-east"}
	for range 3 {
		west.send("shop", "west", "w1", false)
		east.send("shop", "west", "w1", true)
	}
	// us-east reaches rise before us-west reaches fall: up, then down when us-west votes.
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	// us-west's failures stop counting: once it is stale, us-east alone votes, and sees it up.
	startDrill(t, srv, "d2", events.Failure{Kind: events.FailRegion, Region: "us-west"})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west.send("shop", "west", "w1", false)
		east.send("shop", "west", "w1", true)
		time.Sleep(50 * time.Millisecond) // the probers' pace: a result every 50ms from each region
		h := history(t, srv)
		return len(h) == 6 && h[4] == "endpoint.shop.west.w1:up"
	}, "the endpoint comes up once us-west's votes are ignored: %q", func() []string { return history(t, srv) })
}

// TestADrillRolledBackAfterARestartReturnsAHealthyEndpointAtOnce: w1 is up and passes every
// 50 ms (hold_down 3s) when a drill fails its pool, which takes it down. The decider is restarted
// while the drill is in force, and the drill is rolled back: w1 comes up at once, as a decider
// that ran through the drill brings it up, and as detour replay decides it. The down STATE
// recorded last is the drill's, not the probes' view, so it begins no hold-down.
func TestADrillRolledBackAfterARestartReturnsAHealthyEndpointAtOnce(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1, p := drilledDown(t, srv, cfg)
	d1.stop()
	p.send("shop", "west", "w1", true)
	start(t, srv.JS, cfg, "decider/a")
	p.send("shop", "west", "w1", true)
	rolledBack := stamp(t, srv, events.StreamDrills,
		drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	got := passUntilTransitions(t, srv, p, 3, 5*time.Second, "5 s after the drill rolled back: want it up again")
	wantUpAtRollback(t, srv, cfg, got, rolledBack)
}

// drilledDown starts decider/a under cfg, has w1 pass until it is up, and starts drill d1,
// which fails its pool; w1 passes every 50 ms, as configured, until the drill takes it down.
func drilledDown(t *testing.T, srv *eventstest.Server, cfg *config.Config) (*replica, *prober) {
	t.Helper()
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	passUntilTransitions(t, srv, p, 2, 5*time.Second, "5 s after the drill began: want up, then down by the drill")
	return d1, p
}

// wantUpAtRollback fails the test unless w1's last transition, of got, is up within 1 s of the
// drill's rollback at rolledBack, caused as detour replay under cfg decides it.
func wantUpAtRollback(t *testing.T, srv *eventstest.Server, cfg *config.Config, got []string, rolledBack time.Time) {
	t.Helper()
	up, _ := lastW1(t, srv)
	if up.Type != events.TypeEndpointUp || up.Time.Sub(rolledBack) > time.Second {
		t.Errorf("w1's transitions are %q: want it up within 1 s of the drill's rollback at %s", got, rolledBack.Format(time.RFC3339Nano))
	}
	if verdict, cause := replayedLastUp(t, srv, cfg); verdict != "same" || cause != up.Cause {
		t.Errorf("detour replay brings w1 up %s, caused by %s; STATE's last up was caused by %s", verdict, cause, up.Cause)
	}
}

// lastW1 returns the last transition STATE holds on w1.
func lastW1(t *testing.T, srv *eventstest.Server) (events.Envelope, bool) {
	t.Helper()
	var last events.Envelope
	var ok bool
	for _, s := range stateOf(t, srv) {
		if _, tr := events.TransitionStatus(s.Env.Type); tr && s.Subject == events.EndpointStateSubject("shop", "west", "w1") {
			last, ok = s.Env, true
		}
	}
	return last, ok
}

// TestADrillRolledBackWhileNoDeciderRanReturnsAHealthyEndpointAtOnce: as above, but the drill
// is rolled back while the decider is stopped: the decider started afterwards brings w1 up as
// of the rollback, not a hold_down after the results it reads back.
func TestADrillRolledBackWhileNoDeciderRanReturnsAHealthyEndpointAtOnce(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1, p := drilledDown(t, srv, cfg)
	d1.stop()
	p.send("shop", "west", "w1", true)
	rolledBack := stamp(t, srv, events.StreamDrills,
		drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	p.send("shop", "west", "w1", true)
	start(t, srv.JS, cfg, "decider/a")
	got := passUntilTransitions(t, srv, p, 3, 5*time.Second, "5 s after the drill rolled back: want it up again")
	wantUpAtRollback(t, srv, cfg, got, rolledBack)
}

package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// drillEvent records one event of drill id on DRILLS.
func drillEvent(t *testing.T, srv *eventstest.Server, id, typ string, data any) {
	t.Helper()
	e, err := events.New(typ, "drill/test", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.DrillSubject(id), e); err != nil {
		t.Fatal(err)
	}
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

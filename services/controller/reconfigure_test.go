package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestANewConfigurationChangesTheEdgesRoutesWithoutARestart(t *testing.T) {
	ns := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: eventstest.Config(t, edgesDoc), Name: "controller-1",
			Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	west := events.AppRouteSubject("edge-west", "shop")
	last := func() (events.RouteTable, int) {
		h := history(t, ns, events.StreamRoutes, west)
		if len(h) == 0 {
			return events.RouteTable{}, 0
		}
		var r events.EdgeRoute
		if err := h[len(h)-1].Payload(&r); err != nil {
			t.Fatal(err)
		}
		return r.Table(), len(h)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { _, n := last(); return n == 1 }, "a first table for edge-west")

	// The next version adds an instance to the west pool.
	configs <- eventstest.Config(t, strings.Replace(edgesDoc, `endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.31:8081"}]`, 1))
	var rt events.RouteTable
	eventstest.Eventually(t, 5*time.Second, func() bool {
		var n int
		rt, n = last()
		return n == 2 && len(rt.Apps[0].Endpoints) == 2 && rt.Apps[0].Endpoints[1].Address == "127.0.0.31:8081"
	}, "edge-west's table to hold w2: %+v", &rt)
}

// TestAVersionBringingBackAnEarlierRouteStoresItAgain: with no STATE event in between, a route
// went out under an id derived from the last STATE event and the route alone, so a version that
// brought an earlier route back (a rollback within ROUTES' two-minute duplicate window) reused
// the earlier route's id: ROUTES dropped it as a duplicate, and the edge kept the route of the
// version rolled back.
func TestAVersionBringingBackAnEarlierRouteStoresItAgain(t *testing.T) {
	ns := eventstest.Start(t)
	// Heartbeats an hour apart: no edge goes down, and STATE stays empty, during the test.
	doc := strings.ReplaceAll(edgesDoc, "interval: 100ms", "interval: 1h")
	version := func(doc, event string) *config.Config {
		c := eventstest.Config(t, doc)
		c.Event = event
		return c
	}
	configs := make(chan *config.Config, 1)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: version(doc, "applied-1"), Name: "controller-1",
			Log: zerolog.New(zerolog.NewTestWriter(t)), Configs: configs})
	})
	west := events.AppRouteSubject("edge-west", "shop")
	last := func() (events.AppRoute, int) {
		h := history(t, ns, events.StreamRoutes, west)
		if len(h) == 0 {
			return events.AppRoute{}, 0
		}
		var r events.EdgeRoute
		if err := h[len(h)-1].Payload(&r); err != nil {
			t.Fatal(err)
		}
		return r.Route, len(h)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { _, n := last(); return n == 1 }, "a first route for edge-west")

	configs <- version(strings.Replace(doc, `endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.31:8081"}]`, 1), "applied-2")
	eventstest.Eventually(t, 5*time.Second, func() bool { r, n := last(); return n == 2 && len(r.Endpoints) == 2 }, "edge-west's route to hold w2")

	// The operator rolls back: the first version's route is edge-west's again.
	configs <- version(doc, "applied-3")
	var r events.AppRoute
	eventstest.Eventually(t, 5*time.Second, func() bool { r, _ = last(); return len(r.Endpoints) == 1 },
		"edge-west's last route to hold w1 alone after the rollback: %+v", &r)
}

// TestAnAppAnEdgeFrontsAgainGetsTheRouteOfItsStateWhateverAReplicaStoredMeanwhile: two
// controllers; a new version takes shop from edge-west, and reaches one of them first. The
// other, still on the last version, stores edge-west's route for shop when w1 goes down, and
// dies. w1 comes back; a later version gives shop back to edge-west. The controller left kept the
// route it had stored for edge-west before (w1 up; or recorded it when its acknowledgement came
// after the version), took the one it computed again as stored already, and sent nothing:
// edge-west routed shop around a w1 that was up. A route an edge no longer fronts is forgotten
// with the version that takes it away, stored or on its way, and sent again when it comes back.
func TestAnAppAnEdgeFrontsAgainGetsTheRouteOfItsStateWhateverAReplicaStoredMeanwhile(t *testing.T) {
	// Heartbeats an hour apart: no edge goes down, and only the test's transitions reach STATE.
	const doc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 1h, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
  - name: edge-north
    region: us-west
    hostname: edge-north.demo.test
    address: 127.0.0.23
    heartbeat: {interval: 1h, fall: 3}
    apps: [{app: shop, listen: "127.0.0.23:8080"}]
`
	ns := eventstest.Start(t)
	ctx := context.Background()
	w1 := func(from, to events.Status) {
		t.Helper()
		typ := map[events.Status]string{events.StatusDown: events.TypeEndpointDown, events.StatusUp: events.TypeEndpointUp}[to]
		e, err := events.New(typ, "decider-test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: from, To: to, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, ns.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
	}
	// w1 is what the last route stored for shop on edge says of it.
	w1On := func(edge string) events.Status {
		h := history(t, ns, events.StreamRoutes, events.AppRouteSubject(edge, "shop"))
		if len(h) == 0 {
			return ""
		}
		var r events.EdgeRoute
		if err := h[len(h)-1].Payload(&r); err != nil || len(r.Route.Endpoints) != 1 {
			t.Fatalf("edge %s's route for shop: %+v, %v", edge, r, err)
		}
		return r.Route.Endpoints[0].Status
	}
	w1(events.StatusUnknown, events.StatusUp)
	var logs eventstest.Logs
	first := make(chan *config.Config, 1)
	eventstest.Run(t, "controller-1", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: eventstest.Config(t, doc), Name: "controller-1", Log: zerolog.New(&logs), Configs: first})
	})
	stopSecond := eventstest.Run(t, "controller-2", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: eventstest.Config(t, doc), Name: "controller-2", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return w1On("edge-west") == events.StatusUp }, "edge-west's route for shop with w1 up")

	first <- eventstest.Config(t, strings.Replace(doc, `apps: [{app: shop, listen: "127.0.0.21:8080"}]`, `apps: []`, 1))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("configuration applied") == 1 }, "controller-1 taking shop from edge-west")
	w1(events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return w1On("edge-west") == events.StatusDown }, "controller-2 storing edge-west's route for shop with w1 down")
	stopSecond()
	w1(events.StatusDown, events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return w1On("edge-north") == events.StatusUp }, "controller-1 storing edge-north's route for shop with w1 up")

	first <- eventstest.Config(t, doc)
	eventstest.Eventually(t, 5*time.Second, func() bool { return w1On("edge-west") == events.StatusUp },
		"edge-west's route for shop with w1 up once it fronts shop again, as STATE says")
}

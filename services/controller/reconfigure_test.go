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

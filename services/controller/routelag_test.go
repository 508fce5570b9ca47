package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestAControllerStartingWhileAROUTESReplicaLagsStoresEveryRouteStoredSinceAgain: a controller
// stored every edge's route (w unknown, available); another one, on its way out, stored the
// route of w down after it; and one of ROUTES's three replicas, cut from the leader (a partition
// between two nodes), never got those. A controller starting now computes the first route
// again. It read the route ROUTES held for each edge from whichever replica NATS drew, and where
// it drew the lagging one it took the first route for the last stored, computed the same, and
// sent nothing: about one edge in three kept the route of w down, for as long as w's state did
// not change.
func TestAControllerStartingWhileAROUTESReplicaLagsStoresEveryRouteStoredSinceAgain(t *testing.T) {
	const edges = 30
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Streams(t)
	cfg := eventstest.Config(t, manyEdgesDoc(edges))
	run := func(name, url string) (*eventstest.Logs, func()) {
		_, js := eventstest.ConnectJS(t, url)
		var logs eventstest.Logs
		stop := eventstest.Run(t, name, func(ctx context.Context) error {
			return Run(ctx, Options{JS: js, Config: cfg, Name: name, Ticks: make(chan time.Time), Log: zerolog.New(&logs)})
		})
		return &logs, stop
	}
	routes, err := admin.Stream(ctx, events.StreamRoutes)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := run("controller-1", c.URLs[0])
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(routesPerSubject(ctx, routes)) == edges }, "every edge's route stored")
	stop()

	leader, lagging, reader := c.Replicas(t, routes)
	c.DirectGets(t, events.StreamRoutes)
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(lagging, events.StreamRoutes) == edges }, "n%d holding every route", lagging)
	c.Cut(leader, lagging)

	// The route of w down, stored by a controller on its way out. From here on the test reaches
	// ROUTES's leader through the third node, as controller-2 does.
	_, js := eventstest.ConnectJS(t, c.URLs[reader])
	if routes, err = js.Stream(ctx, events.StreamRoutes); err != nil {
		t.Fatal(err)
	}
	for i := range edges {
		edge := fmt.Sprintf("edge%d", i)
		down := events.EdgeRoute{Edge: edge, Route: events.AppRoute{App: "shop", Pool: "west",
			Endpoints: []events.RouteEndpoint{{Name: "w", Address: "10.1.0.1:80", Status: events.StatusDown, Weight: 1}}}}
		e, err := events.New(events.TypeRouteComputed, "controller-0", time.Now(), down)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, js, events.AppRouteSubject(edge, "shop"), e); err != nil {
			t.Fatal(err)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(reader, events.StreamRoutes) == 2*edges }, "n%d holding the routes of w down", reader)

	logs, _ := run("controller-2", c.URLs[reader])
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count("controller started") == 1 }, "controller-2 started")
	behind := c.Held(lagging, events.StreamRoutes)
	var stale []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		stale = stale[:0]
		held := routesPerSubject(ctx, routes)
		for subject, n := range held {
			if n < 3 {
				stale = append(stale, subject)
			}
		}
		return len(held) == edges && len(stale) == 0
	}, "every edge's route of w unknown stored again, with n%d (holding %d routes) behind n%d; these kept the route of w down: %v",
		lagging, behind, leader, &stale)
	t.Logf("every route stored again with the replica on n%d behind, holding %d routes of %d", lagging, behind, 2*edges)
}

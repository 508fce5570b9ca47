package replay_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/replay"
)

// TestARouteStoredAgainUnchangedIsNoRouteChange: the controller stores an app's unchanged route
// again (events.EdgeRoute.RefreshOf) so that ROUTES's byte bound never discards its only copy.
// The timeline shows the route once, when it changed, and the phases of the transition that
// changed it end there, not at the copy stored again later.
func TestARouteStoredAgainUnchangedIsNoRouteChange(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	down, err := events.New(events.TypeEndpointDown, "decider-1", at,
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	r := events.EdgeRoute{Edge: "edge-west", StateSeq: 1, Route: events.AppRoute{App: "shop", Pool: "west",
		Endpoints: []events.RouteEndpoint{{Name: "w1", Address: "127.0.0.11:8081", Status: events.StatusDown, Weight: 1}}}}
	route, err := events.Derived(events.TypeRouteComputed, "controller-1", down.ID, "edge-west|shop", at.Add(time.Millisecond), r)
	if err != nil {
		t.Fatal(err)
	}
	r.RefreshOf = 2
	again, err := events.Derived(events.TypeRouteComputed, "controller-1", "", "detour.routes.edge-west.shop|refresh|2", at.Add(time.Hour), r)
	if err != nil {
		t.Fatal(err)
	}
	subject := events.AppRouteSubject("edge-west", "shop")
	tl := replay.Build([]replay.Record{
		{Stream: events.StreamState, Seq: 1, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: at, Env: down},
		{Stream: events.StreamRoutes, Seq: 2, Subject: subject, Stored: route.Time, Env: route},
		{Stream: events.StreamRoutes, Seq: 3, Subject: subject, Stored: again.Time, Env: again},
	}, replay.Filter{})
	var routes []replay.Item
	var switched time.Time
	for _, it := range tl.Items {
		switch it.Kind {
		case replay.KindRoutes:
			routes = append(routes, it)
		case replay.KindTransition:
			switched = it.Phases.Switched
		}
	}
	if len(routes) != 1 || routes[0].Seq != 2 {
		t.Errorf("route items %+v; want the one change, seq 2, not the copy stored again", routes)
	}
	if !switched.Equal(route.Time) {
		t.Errorf("the transition's edges switched at %s; want %s, when its route changed", switched, route.Time)
	}
}

package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// bigEdgeDoc is one edge fronting n apps of one endpoint each.
func bigEdgeDoc(n int) string {
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: app%d, fqdn: app%d.demo.test, pools: [{name: west, region: us-west, endpoints: [{name: w, address: \"10.1.%d.%d:80\"}]}]}\n",
			i, i, i/250, 1+i%250)
	}
	b.WriteString("edges:\n  - name: edge-big\n    region: us-west\n    hostname: edge-big.demo.test\n    address: 10.9.0.1\n    apps:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {app: app%d, listen: \"127.0.0.1:%d\"}\n", i, 10000+i)
	}
	return b.String()
}

// routesStored is how many messages ROUTES holds for edge, and on how many subjects.
func routesStored(t *testing.T, ns *eventstest.Server, edge string) (msgs, subjects uint64) {
	t.Helper()
	info, err := ns.Stream(t, events.StreamRoutes).Info(context.Background(), jetstream.WithSubjectFilter(events.EdgeRoutesSubjects(edge)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs, info.State.NumSubjects
}

func TestAnEdgeOfTenThousandAppsGetsEveryRouteAndThenOnlyTheOneThatChanged(t *testing.T) {
	const n = 10000
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	first := eventstest.Run(t, "controller controller-1", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	// Whole, the table is over 1 MiB, NATS's max_payload: one message per app's route.
	eventstest.Eventually(t, 30*time.Second, func() bool { m, s := routesStored(t, ns, "edge-big"); return m == n && s == n },
		"ROUTES to hold one route for each of edge-big's %d apps", n)

	endpointDown(t, ns, "app4242")
	var got events.EdgeRoute
	eventstest.Eventually(t, 10*time.Second, func() bool {
		h, _, ok, err := events.Last(context.Background(), ns.Stream(t, events.StreamRoutes), events.AppRouteSubject("edge-big", "app4242"))
		return err == nil && ok && h.Payload(&got) == nil && !got.Route.Available
	}, "app4242's route to show its pool down")
	if m, _ := routesStored(t, ns, "edge-big"); m != n+1 {
		t.Errorf("ROUTES holds %d messages for edge-big after one app changed, want %d: only that app's route is stored again", m, n+1)
	}

	// A second replica starting now, alone, reads what is stored and stores only the route of the
	// app whose endpoint goes down next: the last of edge-big's apps, whose route it sends after
	// any other on the connection ROUTES stores them from, in that order.
	first()
	startController(t, ns, cfg, "controller-2")
	endpointDown(t, ns, "app9999")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		h, _, ok, err := events.Last(context.Background(), ns.Stream(t, events.StreamRoutes), events.AppRouteSubject("edge-big", "app9999"))
		return err == nil && ok && h.Payload(&got) == nil && !got.Route.Available
	}, "app9999's route to show its pool down")
	if m, _ := routesStored(t, ns, "edge-big"); m != n+2 {
		t.Errorf("ROUTES holds %d messages for edge-big after a second replica started and one more app changed, want %d", m, n+2)
	}
}

// endpointDown stores app's endpoint w of pool west going down.
func endpointDown(t *testing.T, ns *eventstest.Server, app string) {
	t.Helper()
	e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.EndpointStateSubject(app, "west", "w"), e); err != nil {
		t.Fatal(err)
	}
}

func TestAControllerStartingOnTenThousandAppsReadsOnlyTheRoutesROUTESHolds(t *testing.T) {
	const n = 10000
	ns := eventstest.Start(t)
	ctx := context.Background()
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	want := map[string]uint64{}
	for _, app := range []string{"app0", "app4242", "app4242", "app9999"} {
		e, err := events.New(events.TypeRouteComputed, "controller-0", time.Now(), events.EdgeRoute{Edge: "edge-big", Route: events.AppRoute{App: app, Pool: "west"}})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(ctx, ns.JS, events.AppRouteSubject("edge-big", app), e)
		if err != nil {
			t.Fatal(err)
		}
		want[app] = ack.Sequence
	}
	routes := ns.Stream(t, events.StreamRoutes)
	tap := eventstest.Connect(t, ns.URL)
	requests, err := tap.SubscribeSync("$JS.API.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}

	published, seqs, err := readPublished(ctx, ns.JS, routes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.Flush(); err != nil { // the server handed tap every request it answered
		t.Fatal(err)
	}
	if sent, _, _ := requests.Pending(); sent > len(want)+1 {
		t.Errorf("the controller sent ROUTES %d requests to read the routes of %d apps; want at most %d: one for the subjects held, one per route", sent, len(want), len(want)+1)
	}
	if len(published["edge-big"]) != len(want) {
		t.Errorf("read the routes of %d apps, want %d", len(published["edge-big"]), len(want))
	}
	for app, seq := range want {
		var r events.AppRoute
		if err := json.Unmarshal(published["edge-big"][app], &r); err != nil || r.App != app {
			t.Errorf("%s's route read as %q (%v)", app, published["edge-big"][app], err)
		}
		if got := seqs[routeKey{"edge-big", app}]; got != seq {
			t.Errorf("%s's route read at seq %d, want %d, its last", app, got, seq)
		}
	}
}

func TestAnEdgeOfTenThousandAppsGetsItsRoutesWithoutFillingNATSsAsyncPublishWindow(t *testing.T) {
	// nats.go holds at most 4,000 asynchronous publishes pending and stalls each one past that
	// up to 200 ms inside the loop. Before, all 10,000 routes were sent at once.
	const n = 10000
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, bigEdgeDoc(n))
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	c := handDriven(ns, cfg, "controller-test", zerolog.New(zerolog.NewTestWriter(t)))
	most := 0
	eventstest.Eventually(t, 30*time.Second, func() bool {
		c.publishRoutes() // a tick
		most = max(most, len(c.sending))
		m, s := routesStored(t, ns, "edge-big")
		return m == n && s == n && len(c.sending) == 0
	}, "ROUTES to hold one route for each of edge-big's %d apps", n)
	if most > 4000 {
		t.Errorf("%d routes were in flight at once, past the 4,000 nats.go holds without stalling", most)
	}
}

package controller

import (
	"context"
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
	startController(t, ns, cfg, "controller-1")
	// Whole, the table is over 1 MiB, NATS's max_payload: one message per app's route.
	eventstest.Eventually(t, 30*time.Second, func() bool { m, s := routesStored(t, ns, "edge-big"); return m == n && s == n },
		"ROUTES to hold one route for each of edge-big's %d apps", n)

	e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.EndpointStateSubject("app4242", "west", "w"), e); err != nil {
		t.Fatal(err)
	}
	var got events.EdgeRoute
	eventstest.Eventually(t, 10*time.Second, func() bool {
		h, _, ok, err := events.Last(context.Background(), ns.Stream(t, events.StreamRoutes), events.AppRouteSubject("edge-big", "app4242"))
		return err == nil && ok && h.Payload(&got) == nil && !got.Route.Available
	}, "app4242's route to show its pool down")
	if m, _ := routesStored(t, ns, "edge-big"); m != n+1 {
		t.Errorf("ROUTES holds %d messages for edge-big after one app changed, want %d: only that app's route is stored again", m, n+1)
	}

	// A second replica starting now reads what is stored and stores nothing again.
	startController(t, ns, cfg, "controller-2")
	time.Sleep(2 * time.Second) // nothing to wait for: the assertion is that nothing comes
	if m, _ := routesStored(t, ns, "edge-big"); m != n+1 {
		t.Errorf("ROUTES holds %d messages for edge-big after a second replica started, want %d", m, n+1)
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

package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// routesDoc is three edges fronting twelve apps of two pools each, some fronted by two edges,
// some with a secondary edge.
func routesDoc() string {
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n")
	for i := range 12 {
		fmt.Fprintf(&b, "  - {name: app%d, fqdn: app%d.demo.test, pools: [{name: west, region: us-west, endpoints: [{name: a, address: \"10.1.0.%d:80\"}, {name: b, address: \"10.1.1.%d:80\"}]}, {name: east, region: us-east, endpoints: [{name: a, address: \"10.2.0.%d:80\"}]}]}\n",
			i, i, 1+i, 1+i, 1+i)
	}
	b.WriteString("edges:\n")
	for e, region := range []string{"us-west", "us-east", "us-west"} {
		fmt.Fprintf(&b, "  - name: edge-%d\n    region: %s\n    hostname: edge-%d.demo.test\n    address: 10.9.0.%d\n    apps:\n", e, region, e, 1+e)
		for i := range 12 {
			switch {
			case i%3 == e:
				fmt.Fprintf(&b, "      - {app: app%d, pool: west, listen: \"127.0.%d.1:%d\", secondary: edge-%d}\n", i, e, 8000+i, (e+1)%3)
			case (i+1)%3 == e:
				fmt.Fprintf(&b, "      - {app: app%d, pool: west, listen: \"127.0.%d.1:%d\"}\n", i, e, 8000+i)
			}
		}
	}
	return b.String()
}

// TestRoutesComputedForChangedAppsOnlyEqualEveryEdgesWholeTable folds random transitions of
// endpoints, pools, overrides and edges into a controller, which computes after each burst only
// the routes of the apps they touched (every route after an edge's change), and checks that
// what it has stored for every app of every edge is what computing each edge's whole table
// from the same state gives.
func TestRoutesComputedForChangedAppsOnlyEqualEveryEdgesWholeTable(t *testing.T) {
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, routesDoc())
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	c := handDriven(ns, cfg, "controller-test", zerolog.New(zerolog.NewTestWriter(t)))
	type change struct{ subject, typ string }
	var changes []change
	for _, a := range cfg.Apps {
		for _, p := range a.Pools {
			changes = append(changes, change{events.PoolStateSubject(a.Name, p.Name), events.TypePoolDown}, change{events.PoolStateSubject(a.Name, p.Name), events.TypePoolUp})
			for _, e := range p.Endpoints {
				s := events.EndpointStateSubject(a.Name, p.Name, e.Name)
				changes = append(changes, change{s, events.TypeEndpointDown}, change{s, events.TypeEndpointUp})
			}
		}
	}
	for _, e := range cfg.Edges {
		changes = append(changes, change{events.EdgeStateSubject(e.Name), events.TypeEdgeDown}, change{events.EdgeStateSubject(e.Name), events.TypeEdgeUp})
	}
	rng := rand.New(rand.NewPCG(5, 6))
	seq, partial := uint64(0), 0
	for burst := range 150 {
		for range 1 + rng.IntN(4) {
			seq++
			ch := changes[rng.IntN(len(changes))]
			var data any = events.Transition{}
			if burst%10 == 9 { // now and then an override instead
				a := cfg.Apps[rng.IntN(len(cfg.Apps))]
				ch = change{events.OverrideSubject(a.Name, "west", "a"), events.TypeOverrideSet}
				data = events.Override{App: a.Name, Pool: "west", Endpoint: "a", Action: []string{events.ActionForceDown, events.ActionDrain, events.ActionForceUp}[rng.IntN(3)]}
			}
			env, err := events.New(ch.typ, "test", time.Now(), data)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.fold(ch.subject, seq, env); err != nil {
				t.Fatal(err)
			}
		}
		if !c.dirty {
			partial++
		}
		c.publishRoutes()
		settleRoutes(t, c)
		for _, e := range cfg.Edges {
			whole, err := route.Compute(cfg, c.view, e.Name, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range whole.Apps {
				want, _ := json.Marshal(a)
				if got := c.published[e.Name][a.App]; string(got) != string(want) {
					t.Fatalf("burst %d: edge %s app %s: stored\n%s\nwant, as the whole table says,\n%s", burst, e.Name, a.App, got, want)
				}
			}
		}
	}
	if partial < 50 {
		t.Fatalf("only %d of 150 bursts computed part of the routes: the test did not exercise it", partial)
	}
	// What was stored is what the controller holds: the last route of each app's subject.
	for _, e := range cfg.Edges {
		for app, want := range c.published[e.Name] {
			env, _, ok, err := events.Last(context.Background(), ns.Stream(t, events.StreamRoutes), events.AppRouteSubject(e.Name, app))
			var r events.EdgeRoute
			if err != nil || !ok || env.Payload(&r) != nil {
				t.Fatalf("edge %s app %s: no route stored (%v)", e.Name, app, err)
			}
			if got, _ := json.Marshal(r.Route); string(got) != string(want) {
				t.Fatalf("edge %s app %s: ROUTES holds %s, the controller %s", e.Name, app, got, want)
			}
		}
	}
}

// BenchmarkRoutesAfter500Of10000AppsChanged is what one batch costs the controller when 500
// of the 10,000 apps one edge fronts changed: their routes computed and stored, against
// computing the edge's whole table to find them (the peer: every batch before).
func BenchmarkRoutesAfter500Of10000AppsChanged(b *testing.B) {
	ns := eventstest.Start(b)
	cfg := eventstest.Config(b, bigEdgeDoc(10000))
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, whole := range []bool{false, true} {
		b.Run(map[bool]string{false: "changed apps", true: "whole table"}[whole], func(b *testing.B) {
			c := handDriven(ns, cfg, "controller-bench", zerolog.Nop())
			c.publishRoutes()
			settleRoutes(b, c)
			seq, moved := uint64(0), 0
			for b.Loop() {
				b.StopTimer() // the transitions are not the batch's cost
				for range 500 {
					seq++
					typ := []string{events.TypeEndpointDown, events.TypeEndpointUp}[moved/10000%2]
					env, err := events.New(typ, "bench", time.Now(), events.Transition{})
					if err != nil {
						b.Fatal(err)
					}
					subject := events.EndpointStateSubject(fmt.Sprintf("app%d", moved%10000), "west", "w")
					if err := c.fold(subject, seq, env); err != nil {
						b.Fatal(err)
					}
					moved++
				}
				c.dirty = whole
				b.StartTimer()
				c.publishRoutes()
				settleRoutes(b, c)
			}
		})
	}
}

// handDriven is a controller of cfg on ns that no loop runs: the test folds STATE events and
// calls publishRoutes as the loop would. It read ROUTES at start, which held nothing.
func handDriven(ns *eventstest.Server, cfg *config.Config, name string, log zerolog.Logger) *controller {
	return &controller{
		o:   Options{JS: ns.JS, Config: cfg, Name: name, Now: time.Now},
		log: log, view: state.NewView(), published: map[string]map[string][]byte{}, live: NewLiveness(cfg, time.Now()),
		dirty: true, dirtyApps: map[string]map[string]bool{}, routesRead: true,
		sending: map[routeKey]*routeSend{}, routeFailures: logs.NewRepeats(time.Minute),
		routeRetry: map[routeKey]time.Duration{}, routesDue: time.NewTimer(time.Hour), ages: newRouteAges(0),
	}
}

// settleRoutes waits until ROUTES acknowledged every route c sent, as the controller's next
// ticks would find.
func settleRoutes(tb testing.TB, c *controller) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.collectRoutes(); len(c.sending) > 0; c.collectRoutes() {
		if time.Now().After(deadline) {
			tb.Fatalf("%d routes not acknowledged within 10s", len(c.sending))
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestTwoReplicasThatFoldedTheSameEventsStoreEachRouteOnce: a route's id is derived from the
// STATE event that caused it, so two replicas store it once only if they name the same cause.
// The replica that appended an edge's transition hears STATE's answer to its append after STATE
// delivered it and a later event; before, folding that answer made the older transition the
// cause again, and the same route was stored twice, under two ids.
func TestTwoReplicasThatFoldedTheSameEventsStoreEachRouteOnce(t *testing.T) {
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, routesDoc())
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	event := func(typ string) events.Envelope {
		env, err := events.New(typ, "test", time.Now(), events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	stored := []struct {
		subject string
		env     events.Envelope
	}{
		{events.EndpointStateSubject("app0", "west", "a"), event(events.TypeEndpointDown)},
		{events.EdgeStateSubject("edge-1"), event(events.TypeEdgeDown)}, // appended by the second replica
		{events.EndpointStateSubject("app1", "west", "a"), event(events.TypeEndpointDown)},
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	first, second := handDriven(ns, cfg, "controller-1", log), handDriven(ns, cfg, "controller-2", log)
	for i, s := range stored {
		for _, c := range []*controller{first, second} {
			if err := c.fold(s.subject, uint64(i+1), s.env); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := second.fold(stored[1].subject, 2, stored[1].env); err != nil { // its append's answer, late
		t.Fatal(err)
	}
	for _, c := range []*controller{first, second} {
		c.publishRoutes()
		settleRoutes(t, c)
	}
	if first.lastCause != second.lastCause {
		t.Errorf("the replicas name causes %s and %s for the same events", first.lastCause, second.lastCause)
	}
	info, err := ns.Stream(t, events.StreamRoutes).Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	for subject, n := range info.State.Subjects {
		if n != 1 {
			t.Errorf("%s holds %d routes, want 1: the replicas stored one route under two ids", subject, n)
		}
	}
	if len(info.State.Subjects) == 0 {
		t.Fatal("no route stored")
	}
}

// TestTheLastRouteStoredIsTheLatestWhenTwoReplicasFoldedTheSameEventsInDifferentBursts: a
// route's id derived from its cause and itself alone. A replica that folded two transitions in
// one burst stored the route of both; one that folded them one at a time stored the route of the
// first after it, then the route of both under the id the first replica's had: ROUTES dropped it
// as a duplicate, and the edge kept a route to an instance STATE holds down.
func TestTheLastRouteStoredIsTheLatestWhenTwoReplicasFoldedTheSameEventsInDifferentBursts(t *testing.T) {
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, routesDoc())
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	down := func(endpoint string) (string, events.Envelope) {
		env, err := events.New(events.TypeEndpointDown, "decider-1", time.Now(), events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		return events.EndpointStateSubject("app0", "west", endpoint), env
	}
	aSubject, aDown := down("a")
	bSubject, bDown := down("b")
	log := zerolog.New(zerolog.NewTestWriter(t))
	first, second := handDriven(ns, cfg, "controller-1", log), handDriven(ns, cfg, "controller-2", log)
	for _, c := range []*controller{first, second} {
		c.publishRoutes()
		settleRoutes(t, c)
	}
	fold := func(c *controller, subject string, seq uint64, env events.Envelope) {
		if err := c.fold(subject, seq, env); err != nil {
			t.Fatal(err)
		}
	}
	// The first replica folds both downs in one burst.
	fold(first, aSubject, 1, aDown)
	fold(first, bSubject, 2, bDown)
	first.publishRoutes()
	settleRoutes(t, first)
	// The second, a moment behind, folds them one at a time.
	fold(second, aSubject, 1, aDown)
	second.publishRoutes()
	settleRoutes(t, second)
	fold(second, bSubject, 2, bDown)
	second.publishRoutes()
	settleRoutes(t, second)

	h := history(t, ns, events.StreamRoutes, events.AppRouteSubject("edge-0", "app0"))
	var r events.EdgeRoute
	if err := h[len(h)-1].Payload(&r); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range r.Route.Endpoints {
		got = append(got, e.Name+" "+string(e.Status))
	}
	if r.Route.Available || strings.Join(got, ", ") != "a down, b down" {
		t.Errorf("edge-0's last route of app0: %s, available %v; want a and b down, unavailable", strings.Join(got, ", "), r.Route.Available)
	}
}

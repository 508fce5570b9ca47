package proxy

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/proxy/route"
	"github.com/rs/zerolog"
)

func TestAnEjectedInstanceReturnsWhenItAnswersOrTheDeciderSawItRecover(t *testing.T) {
	const addr = "127.0.0.11:8081"
	e := &edge{name: "edge-west", log: zerolog.Nop(), peers: newPeers("edge-west", "", time.Second, zerolog.Nop())}
	a := newApp(e, config.EdgeApp{App: "shop", Mode: config.ModeHTTP, PassiveFall: 3, PassiveCooldown: config.Duration(2 * time.Second)})
	now := time.Unix(1700000000, 0)
	a.now = func() time.Time { return now }
	routeWith := func(s events.Status) {
		a.setRoute(events.AppRoute{App: "shop", Pool: "west", Available: true,
			Endpoints: []events.RouteEndpoint{{Name: "w1", Address: addr, Status: s, Weight: 1}}})
	}
	target := route.Target{Addr: addr, Endpoint: "w1"}
	refused := errors.New("connect: connection refused")
	steps := []struct {
		do   func()
		want bool // skipped afterwards
		what string
	}{
		{func() { routeWith(events.StatusUnknown) }, false, "a new instance is in rotation"},
		{func() { a.failed(a.route.Load(), target, notSent, refused) }, true, "one connect failure ejects it"},
		{func() { routeWith(events.StatusUp) }, true, "unknown → up is older news than the failure: it stays ejected"},
		{func() { now = now.Add(1999 * time.Millisecond) }, true, "it is skipped for the whole cooldown"},
		{func() { now = now.Add(time.Millisecond) }, false, "then a request may try it"},
		{func() { a.failed(a.route.Load(), target, notSent, refused) }, true, "a failed try ejects it again"},
		{func() { routeWith(events.StatusDown) }, true, "the decider saw it down"},
		{func() { routeWith(events.StatusUp) }, false, "and up again: back in rotation before the cooldown ends"},
		{func() { a.failed(a.route.Load(), target, noAnswer, refused) }, false, "a broken connection is one of passive_fall's 3"},
		{func() { a.failed(a.route.Load(), target, timedOut, refused) }, false, "a timeout is the second"},
		{func() { a.failed(a.route.Load(), target, noAnswer, refused) }, true, "the third ejects it"},
		{func() { now = now.Add(2 * time.Second); a.succeeded(a.route.Load(), &attempt{t: target}) }, false, "a try after the cooldown that answers puts it back"},
		{func() { a.failed(a.route.Load(), target, notSent, refused) }, true, "and the next connect failure ejects it at once"},
	}
	for i, s := range steps {
		s.do()
		if got := a.skip(addr); got != s.want {
			t.Fatalf("step %d (%s): skipped = %v, want %v", i, s.what, got, s.want)
		}
	}
}

// A secondary whose heartbeat failed (it was not yet listening when the edge started, say) is
// the last resort of a plan, after an ejected instance. A request it answered there shows it
// serves again: the next requests go to it first, not to the instance ejected for an hour, as
// a request it failed takes it out at once (app.failed).
func TestASecondaryThatAnsweredARequestComesBeforeAnEjectedInstanceWhateverItsLastHeartbeat(t *testing.T) {
	a, r := shopWithASecondary()
	r.secondary.alive.Store(false) // its first heartbeat failed
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	var tried []string
	err := a.forward(func() bool { return false }, r, a.plan(r, false), true, func() bool { return true }, func(at *attempt) error {
		tried = append(tried, at.t.Addr)
		if at.t.Secondary {
			return nil
		}
		return refused
	})
	if err != nil || len(tried) != 2 || tried[1] != "127.0.0.22:8080" {
		t.Fatalf("the first request tried %q and ended with %v, want w1 then the secondary, which answered", tried, err)
	}
	if plan := a.plan(a.route.Load(), false); len(plan) == 0 || !plan[0].Secondary {
		t.Errorf("the next request's plan is %+v, want the secondary first: it answered, and w1 is ejected for an hour", plan)
	}
}

// A secondary whose heartbeats fail and that answers a request as the last resort with an
// error of its own (a 502: it reached no instance either) does not show it serves: it stays
// the last resort, after the ejected instance, until a heartbeat answers, rather than taking
// the next requests from an instance that may have recovered.
func TestASecondaryThatAnsweredAsTheLastResortWithA5xxStaysTheLastResort(t *testing.T) {
	a, r := shopWithASecondary()
	r.secondary.alive.Store(false) // its heartbeats fail
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	var tried []string
	err := a.forward(func() bool { return false }, r, a.plan(r, false), true, func() bool { return true }, func(at *attempt) error {
		tried = append(tried, at.t.Addr)
		if at.t.Secondary {
			a.answered(at, 502)
			return nil
		}
		return refused
	})
	if err != nil || len(tried) != 2 || tried[1] != "127.0.0.22:8080" {
		t.Fatalf("the first request tried %q and ended with %v, want w1 then the secondary, which answered 502", tried, err)
	}
	if plan := a.plan(a.route.Load(), false); len(plan) == 0 || plan[0].Secondary {
		t.Errorf("the next request's plan is %+v, want w1 first: the secondary's heartbeats fail and it answered only its own 502", plan)
	}
}

// shopWithASecondary is app shop of edge-west, one instance w1 ejected for an hour by one failed
// request, retried on connect failures, with edge-east as its secondary; and its route.
func shopWithASecondary() (*app, *appRoute) {
	e := &edge{name: "edge-west", log: zerolog.Nop(), peers: newPeers("edge-west", "", time.Second, zerolog.Nop())}
	a := newApp(e, config.EdgeApp{App: "shop", Mode: config.ModeHTTP, PassiveFall: 1, PassiveCooldown: config.Duration(time.Hour),
		RetryOn: []string{config.RetryOnConnectFailure}})
	a.setRoute(events.AppRoute{App: "shop", Pool: "west", Available: true,
		Endpoints: []events.RouteEndpoint{{Name: "w1", Address: "127.0.0.11:8081", Status: events.StatusUp, Weight: 1}},
		Secondary: &events.SecondaryRoute{Edge: "edge-east", Hostname: "edge-east.demo.test", Address: "127.0.0.22", Port: 8080, Status: events.StatusUp}})
	r := a.route.Load()
	return a, r
}

// TestARouteStoredAgainUnchangedChangesNothingOnTheEdge: the controller stores an app's
// unchanged route again (refresh_of) so that ROUTES's byte bound never discards it. The edge
// applies it as any route, and since it is the route it holds, nothing changes: an ejected
// instance stays ejected, the secondary keeps its peer (its resolved address, its failed
// heartbeats), the rotation goes on where it was.
func TestARouteStoredAgainUnchangedChangesNothingOnTheEdge(t *testing.T) {
	a, r := shopWithASecondary()
	a.failed(r, route.Target{Addr: "127.0.0.11:8081", Endpoint: "w1"}, notSent, errors.New("connect: connection refused"))
	r.secondary.alive.Store(false)
	turn := a.turn.Load()
	env, err := events.New(events.TypeRouteComputed, "controller-1", time.Now(),
		events.EdgeRoute{Edge: "edge-west", StateSeq: 9, Route: r.AppRoute, RefreshOf: 7})
	if err != nil {
		t.Fatal(err)
	}
	again, err := decodeRoute(env.Encode(), "edge-west")
	if err != nil {
		t.Fatal(err)
	}
	a.setRoute(again.Route)
	now := a.route.Load()
	if !a.skip("127.0.0.11:8081") || now.secondary != r.secondary || now.secondary.alive.Load() || a.turn.Load() != turn {
		t.Errorf("after the same route again: w1 skipped %v (want true), same secondary peer %v, its heartbeats answered %v (want false), turn %d (want %d)",
			a.skip("127.0.0.11:8081"), now.secondary == r.secondary, now.secondary.alive.Load(), a.turn.Load(), turn)
	}
}

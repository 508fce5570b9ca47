package proxy

import (
	"errors"
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
		{func() { now = now.Add(2 * time.Second); a.succeeded(target) }, false, "a try after the cooldown that answers puts it back"},
		{func() { a.failed(a.route.Load(), target, notSent, refused) }, true, "and the next connect failure ejects it at once"},
	}
	for i, s := range steps {
		s.do()
		if got := a.skip(addr); got != s.want {
			t.Fatalf("step %d (%s): skipped = %v, want %v", i, s.what, got, s.want)
		}
	}
}

package state_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/state"
)

func event(t *testing.T, typ string, payload any) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestATransitionThatDoesNotFitItsSubjectOrHistoryIsUnexpected(t *testing.T) {
	ep := "detour.state.endpoint.shop.west.w1"
	down := events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown}
	with := func(f func(*events.Transition)) events.Transition { c := down; f(&c); return c }
	for _, c := range []struct {
		name    string
		subject string
		prev    events.Status
		hasPrev bool
		e       events.Envelope
		want    string
	}{
		{"the decider's transition fits", ep, events.StatusUp, true, event(t, events.TypeEndpointDown, down), ""},
		{"a first transition fits whatever its from", ep, "", false, event(t, events.TypeEndpointDown, down), ""},
		{"an edge transition on an endpoint subject", ep, events.StatusUp, true,
			event(t, events.TypeEdgeDown, events.Transition{Edge: "w1", From: events.StatusUp, To: events.StatusDown}),
			"type detour.edge.down.v1 does not belong on endpoint subjects"},
		{"another endpoint's payload", ep, events.StatusUp, true,
			event(t, events.TypeEndpointDown, with(func(t *events.Transition) { t.Endpoint = "w2" })),
			"payload names shop.west.w2, not the subject's shop.west.w1"},
		{"a payload going elsewhere than its type", ep, events.StatusUp, true,
			event(t, events.TypeEndpointDown, with(func(t *events.Transition) { t.To = events.StatusUp })),
			"payload goes to up but the type says down"},
		{"a from that is not what STATE recorded", ep, events.StatusDown, true, event(t, events.TypeEndpointDown, down),
			"from up, but STATE last recorded down"},
		{"a pool transition fits its pool", "detour.state.pool.shop.west", events.StatusUp, true,
			event(t, events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown}), ""},
		{"an edge transition naming another edge", "detour.state.edge.edge-west", events.StatusUp, true,
			event(t, events.TypeEdgeDown, events.Transition{Edge: "edge-east", From: events.StatusUp, To: events.StatusDown}),
			"payload names edge-east, not the subject's edge-west"},
		{"an override fits its subject", "detour.state.override.shop.west._pool", "", true,
			event(t, events.TypeOverrideSet, events.Override{Action: events.ActionDrain}), ""},
		{"a hold-down begun fits its subject", events.HoldDownSubject("shop", "west", "w1"), "", false,
			event(t, events.TypeHoldDownStarted, events.HoldDown{App: "shop", Pool: "west", Endpoint: "w1"}), ""},
		{"a transition on a hold-down subject", events.HoldDownSubject("shop", "west", "w1"), "", false,
			event(t, events.TypeEndpointDown, down), "type detour.endpoint.down.v1 does not belong on holddown subjects"},
		{"a subject of no aggregate", "detour.state.endpoint.shop", "", false, event(t, events.TypeEndpointDown, down),
			"subject detour.state.endpoint.shop is no STATE aggregate"},
	} {
		if got := state.Check(c.subject, c.prev, c.hasPrev, c.e); got != c.want {
			t.Errorf("%s: Check = %q, want %q", c.name, got, c.want)
		}
	}
}

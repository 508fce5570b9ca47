package override_test

import (
	"context"
	"errors"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/override"
)

func TestCheckNamesTheFieldAndTheProblem(t *testing.T) {
	ok := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionDrain, Reason: "deploy", By: "alice@box"}
	with := func(f func(*events.Override)) events.Override { o := ok; f(&o); return o }
	tests := []struct {
		name     string
		o        events.Override
		clearing bool
		want     string
	}{
		{"a complete override passes", ok, false, ""},
		{"a whole pool needs no endpoint", with(func(o *events.Override) { o.Endpoint = "" }), false, ""},
		{"the app must be a token", with(func(o *events.Override) { o.App = "shop.x" }), false,
			`override app: "shop.x" may hold only letters, digits, '_' and '-'`},
		{"the pool must be given", with(func(o *events.Override) { o.Pool = "" }), false, "override pool: must not be empty"},
		{"the endpoint must be a token", with(func(o *events.Override) { o.Endpoint = "a b" }), false,
			`override endpoint: "a b" may hold only letters, digits, '_' and '-'`},
		{"the action must be known", with(func(o *events.Override) { o.Action = "reboot" }), false,
			`override action: want force_up, force_down or drain, got "reboot"`},
		{"a clear takes no action", ok, true, `override action: a clear takes no action, got "drain"`},
		{"a reason is required", with(func(o *events.Override) { o.Reason = " " }), false,
			"override reason: must not be empty: say why, the history keeps it"},
		{"an author is required", with(func(o *events.Override) { o.By = "" }), false,
			"override by: must not be empty: name who made it, e.g. user@host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := override.Check(tt.o, tt.clearing)
			if got := errText(err); got != tt.want {
				t.Errorf("Check = %q, want %q", got, tt.want)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestValidateFindsTheNamesInTheConfiguration(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for o, want := range map[events.Override]string{
		{App: "shop", Pool: "west", Endpoint: "w1"}: "",
		{App: "shop", Pool: "west"}:                 "",
		{App: "blog", Pool: "west"}:                 `override app: no app "blog" in the configuration`,
		{App: "shop", Pool: "east"}:                 `override pool: no pool "east" in app "shop"`,
		{App: "shop", Pool: "west", Endpoint: "w2"}: `override endpoint: no endpoint "w2" in pool "west" of app "shop"`,
	} {
		if got := errText(override.Validate(c, o)); got != want {
			t.Errorf("Validate(%+v) = %q, want %q", o, got, want)
		}
	}
}

func TestSetListAndClearKeepWhoAndWhy(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	drain := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionDrain, Reason: "deploy", By: "alice@box"}
	pool := events.Override{App: "shop", Pool: "west", Action: events.ActionForceDown, Reason: "region outage", By: "bob@box"}
	for _, o := range []events.Override{drain, pool} {
		if err := override.Set(ctx, srv.JS, o); err != nil {
			t.Fatalf("set %+v: %v", o, err)
		}
	}
	list, err := override.List(ctx, srv.JS)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Override != pool || list[1].Override != drain || list[0].EventID == "" {
		t.Fatalf("in force: %+v; want the pool's then the endpoint's", list)
	}

	cleared := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Reason: "deployed", By: "alice@box"}
	if err := override.Clear(ctx, srv.JS, cleared); err != nil {
		t.Fatal(err)
	}
	last, _, _, err := events.Last(ctx, srv.Stream(t, events.StreamState), events.OverrideSubject("shop", "west", "w1"))
	var got events.Override
	if err != nil || last.Type != events.TypeOverrideCleared || last.Payload(&got) != nil || got != cleared {
		t.Fatalf("last override event = %s %+v (%v), want the clear by alice", last.Type, got, err)
	}
	if list, _ := override.List(ctx, srv.JS); len(list) != 1 || list[0].Override != pool {
		t.Errorf("in force after the clear: %+v, want only the pool's", list)
	}
}

func TestClearingWhatIsNotInForceSaysSo(t *testing.T) {
	srv := eventstest.Start(t)
	o := events.Override{App: "shop", Pool: "west", Reason: "oops", By: "alice@box"}
	if err := override.Clear(context.Background(), srv.JS, o); !errors.Is(err, override.ErrNoOverride) {
		t.Fatalf("Clear with nothing set = %v, want ErrNoOverride", err)
	}
}

package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
)

func TestLoadSkipsWhatNoFollowerCouldApplyAndReadsTheRestOfSTATE(t *testing.T) {
	srv := eventstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool := events.PoolStateSubject("shop", "west")
	e, _ := events.New(events.TypePoolDown, "decider-1", time.Now(), events.Transition{App: "shop", Pool: "west", To: events.StatusDown})
	if _, err := events.Publish(ctx, srv.JS, pool, e); err != nil {
		t.Fatal(err)
	}
	// What a client allowed on detour.state.endpoint.> can store, and STATE never forgets: a
	// message that is no event, and an event that is no state event.
	if _, err := srv.JS.Publish(ctx, events.EndpointStateSubject("shop", "west", "a"), []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	other, _ := events.New(events.TypeConfigApplied, "decider-1", time.Now(), events.ConfigApplied{})
	if _, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "b"), other); err != nil {
		t.Fatal(err)
	}
	v, err := state.Load(ctx, srv.JS)
	if err != nil {
		t.Fatalf("load STATE: %v, want the state the followers skipping those messages hold", err)
	}
	if got := v.Pool("shop", "west"); got != events.StatusDown {
		t.Errorf("pool shop/west is %q, want down", got)
	}
	if got := v.Endpoint("shop", "west", "a"); got != events.StatusUnknown {
		t.Errorf("endpoint shop/west/a is %q, want unknown", got)
	}
}

package alert_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
)

// TestAPoolDownInAStateStreamCreatedAgainIsAlerted: an operator deletes STATE (or a server
// loses its store) and it is created again, its sequences starting over at 1. A pool going down
// in the new stream is alerted, though its sequence is one the sender had seen in the old stream
// before it started.
func TestAPoolDownInAStateStreamCreatedAgainIsAlerted(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "x")
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	west := events.PoolStateSubject("shop", "west")
	transition(t, ns.JS, west, events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	transition(t, ns.JS, west, events.TypePoolUp, events.Transition{App: "shop", Pool: "west", From: events.StatusDown, To: events.StatusUp, Reason: "w1 up"})
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 10*time.Second, "at start")

	if err := ns.JS.DeleteStream(context.Background(), events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	followsSTATE(t, ns, 10*time.Second, "created again")
	transition(t, ns.JS, west, events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	rc.waitAccepted(t, 5*time.Second, "the pool_down of the new stream delivered")
}

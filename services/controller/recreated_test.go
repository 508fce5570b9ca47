package controller

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAControllerRecordsTheEdgesInAStateStreamCreatedAgain: an operator deletes STATE (or a
// server loses its store) and it is created again, empty, its sequences starting over at 1.
// The controller records in it the liveness of the edges it hears, as on a first start, and
// goes on recording their changes there.
func TestAControllerRecordsTheEdgesInAStateStreamCreatedAgain(t *testing.T) {
	ns := eventstest.Start(t)
	startController(t, ns, eventstest.Config(t, edgesDoc), "controller-1")
	stop := make(chan struct{})
	beat(t, ns, "edge-west", 50*time.Millisecond, stop)
	beat(t, ns, "edge-east", 50*time.Millisecond, nil)
	west, east := events.EdgeStateSubject("edge-west"), events.EdgeStateSubject("edge-east")
	var w, e string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		w, e = types(history(t, ns, events.StreamState, west)), types(history(t, ns, events.StreamState, east))
		return w == "U" && e == "U"
	}, "both edges up: west %q, east %q", &w, &e)

	ctx := context.Background()
	if err := ns.JS.DeleteStream(ctx, events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		w, e = types(history(t, ns, events.StreamState, west)), types(history(t, ns, events.StreamState, east))
		return w == "U" && e == "U"
	}, "both edges up in the new stream: west %q, east %q", &w, &e)

	close(stop)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		w = types(history(t, ns, events.StreamState, west))
		return w == "UD"
	}, "edge-west down in the new stream once its heartbeats stop: %q", &w)
}

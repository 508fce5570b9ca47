package decider_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// Another writer of STATE (the controller) can compute what a transition's id is derived from:
// the deciding result's id and the subject's last sequence. Stored first on a subject of its own,
// that id would have JetStream drop the transition as a duplicate; the decider appends it again.
func TestAnEndpointTransitionWhoseIDAnotherSubjectHoldsIsAppendedAgain(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	c := eventstest.Config(t, shopYAML)
	start(t, srv.JS, c, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "us"}
	for range 2 {
		p.send("shop", "west", "w1", true)
		p.send("shop", "east", "e1", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up")
	st := srv.Stream(t, events.StreamState)
	subject := events.EndpointStateSubject("shop", "west", "w1")
	_, seq, _, err := events.Last(ctx, st, subject)
	if err != nil {
		t.Fatal(err)
	}
	// The third failure, p's next result but two, takes w1 down.
	forged, err := events.New(events.TypeEdgeDown, "controller-1", time.Now(), events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	forged.ID = events.DerivedID(fmt.Sprintf("us-%d", p.n+3), events.TypeEndpointDown+"|"+subject+"|"+string(events.StatusDown)+"|"+fmt.Sprint(seq))
	if _, err := events.Publish(ctx, srv.JS, events.EdgeStateSubject("edge-west"), forged); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	for _, subject := range []string{subject, events.PoolStateSubject("shop", "west")} {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			e, _, ok, err := events.Last(ctx, st, subject)
			return err == nil && ok && (e.Type == events.TypeEndpointDown || e.Type == events.TypePoolDown)
		}, "%s does not end down: w1's down was dropped as a duplicate of the edge's event", subject)
	}
}

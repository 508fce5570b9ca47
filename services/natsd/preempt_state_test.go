package natsd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/rs/zerolog"
)

// The controller, which writes STATE too (edge transitions, overrides), must not be able to
// store a decider's next transition's id first and have JetStream drop the transition.
func TestDeploymentIdentitiesTheControllerCannotDropADecidersPoolTransitionByPublishingItsIDFirst(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	// A deadline of the test's own for its setup calls, rather than the client's default of 5 s:
	// CI once saw one STREAM.INFO go unanswered for those 5 s on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, _, err := config.Apply(ctx, d.as("operator").js, "test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "decider-1", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: d.as("decider-1").js, Config: cfg, Name: "decider-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	down, err := events.New(events.TypeEndpointDown, "decider-2", time.Now(),
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	controller := d.as("controller-1")
	st, err := controller.js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	pool := events.PoolStateSubject("shop", "us-west")
	_, seq, _, err := events.Last(ctx, st, pool)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := events.New(events.TypeEdgeDown, "controller-1", time.Now(), events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	forged.ID = events.DerivedID(down.ID, events.TypePoolDown+"|"+pool+"|"+string(events.StatusDown)+"|"+fmt.Sprint(seq))
	if _, err := events.Publish(ctx, controller.js, events.EdgeStateSubject("edge-west"), forged); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, d.as("decider-2").js, events.EndpointStateSubject("shop", "us-west", "w1"), down); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, pool)
		return err == nil && ok && e.Type == events.TypePoolDown
	}, "us-west's pool down is not on %s: dropped as a duplicate of the controller's event", pool)
}

package alert_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
)

// A webhook that fails every delivery holds each for retry_for, waiting between attempts; the
// alerts of other webhooks must not wait for its deliveries, however many it has: a region's
// failure that floods one group's dead webhook with transitions is when the other group's page
// matters. Its deliveries beyond 4096 in flight are abandoned at once, and recorded so.
func TestAWebhookThatFailsEveryDeliveryDoesNotHoldUpAnotherGroupsAlert(t *testing.T) {
	dead, pager := &receiver{fails: 1 << 30}, &receiver{}
	deadHook, pagerHook := serve(t, dead), serve(t, pager)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, fmt.Sprintf(liveDoc, group("noisy", deadHook.URL, "")+
		fmt.Sprintf("  - {name: pager, on: [pool_down], webhooks: [{url: %q}]}\n", pagerHook.URL)))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: time.Minute,
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	const flaps = 4096 + 10
	for i := range flaps {
		typ, from, to := events.TypeEndpointDown, events.StatusUp, events.StatusDown
		if i%2 == 1 {
			typ, from, to = events.TypeEndpointUp, events.StatusDown, events.StatusUp
		}
		transition(t, ns.JS, events.EndpointStateSubject("shop", "west", "w1"), typ,
			events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: from, To: to})
	}
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	pager.waitAccepted(t, 10*time.Second, fmt.Sprintf("the pool_down at pager's webhook while noisy's fails %d deliveries (it saw %d)", flaps, dead.count()))

	alerts := ns.Stream(t, events.StreamAlerts)
	const unsent = "not sent: 4096 deliveries to this webhook are in flight already"
	var seen int
	eventstest.Eventually(t, 10*time.Second, func() bool {
		for ; ; seen++ {
			m, err := alerts.GetMsg(context.Background(), uint64(seen+1))
			if err != nil {
				return false
			}
			var a events.AlertAttempt
			if e, err := events.Decode(m.Data); err == nil && e.Payload(&a) == nil && a.Alert == "noisy" &&
				a.Result == events.AlertAbandoned && a.Attempt == 0 && a.Error == unsent {
				return true
			}
		}
	}, "ALERTS to record a delivery of noisy abandoned unsent (%q); read %d attempts", unsent, &seen)
}

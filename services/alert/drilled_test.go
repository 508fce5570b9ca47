package alert_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
)

// TestADrillsPoolDownAndFailoverAreToldAsTheDrillsAndAnOutageIsNot runs a drill that fails pool
// west, as the decider records it (the endpoint's transitions carry the drill, the pool's names
// the endpoint's as its cause and says nothing of the drill), then a real outage of the same
// pool: an on-call engineer paged must tell the drill's alerts from the outage's, by the text
// and by drill_id.
func TestADrillsPoolDownAndFailoverAreToldAsTheDrillsAndAnOutageIsNot(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s")
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	w1, west := events.EndpointStateSubject("shop", "west", "w1"), events.PoolStateSubject("shop", "west")
	appendCaused := func(subject, typ, cause string, tr events.Transition) events.Envelope {
		t.Helper()
		e, err := events.New(typ, "decider-1", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		e.Cause = cause
		if _, err := events.Publish(context.Background(), ns.JS, subject, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	goes := func(to events.Status, drill, reason string) {
		t.Helper()
		from, ep, pool := events.StatusUp, events.TypeEndpointDown, events.TypePoolDown
		if to == events.StatusUp {
			from, ep, pool = events.StatusDown, events.TypeEndpointUp, events.TypePoolUp
		}
		e := appendCaused(w1, ep, "", events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: from, To: to, Reason: reason, Drill: drill})
		appendCaused(west, pool, e.ID, events.Transition{App: "shop", Pool: "west", From: from, To: to,
			Reason: "w1 " + string(to) + ": 0 of 1 endpoints serving, need 1"})
	}
	// The drill: w1's failure moves shop's answer to east (failover), then west goes down
	// (pool_down); its rollback brings the answer back (failover; west up is a transition only).
	goes(events.StatusDown, "lose-west-1", "drill lose-west-1: simulated failure of pool shop/west")
	goes(events.StatusUp, "", "drill ended; 1 of 1 voting regions see it up (quorum 0.5)")
	// A drill's failure recorded before transitions carried the drill tells it by its wording.
	goes(events.StatusDown, "", "drill lose-west-1: simulated failure of pool shop/west")
	goes(events.StatusUp, "", "drill ended; 1 of 1 voting regions see it up (quorum 0.5)")
	const drillAlerts = 6
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == drillAlerts },
		"%d alerts delivered for the drill; got %d", drillAlerts, rc.delivered())
	// The outage: the same pool, its probes failing.
	goes(events.StatusDown, "", "3 consecutive failures")
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == drillAlerts+2 },
		"2 alerts delivered for the outage after the drill's %d; got %d in all", drillAlerts, rc.delivered())

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, body := range rc.accepted {
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		text, _ := p["text"].(string)
		if i < drillAlerts {
			if p["drill_id"] != "lose-west-1" || !strings.HasPrefix(text, "[drill lose-west-1] ") {
				t.Errorf("drill alert %d (%s) has drill_id %v and text %q, want drill_id lose-west-1 and the text to begin [drill lose-west-1]",
					i, p["kind"], p["drill_id"], text)
			}
			continue
		}
		if _, ok := p["drill_id"]; ok || strings.Contains(text, "drill") {
			t.Errorf("outage alert %d (%s) is told as a drill's: %s", i, p["kind"], body)
		}
	}
}

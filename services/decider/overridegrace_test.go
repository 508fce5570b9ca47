package decider

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAnOverrideWaitsForTheResultsHeardBeforeItNoLongerThanTheirGrace: the operator forces w1
// down while this replica is behind in PROBES (a storm of results: the loop has PROBES
// deliveries waiting at every tick), with a result heard on the wire before STATE delivered the
// override and not yet delivered by PROBES. The override waits for it at most the grace a result
// heard on the wire waits for PROBES: the loop's lag in PROBES, which a storm makes as long as it
// lasts, no longer delays the operator's override, nor the deadlines after it.
func TestAnOverrideWaitsForTheResultsHeardBeforeItNoLongerThanTheirGrace(t *testing.T) {
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`)
	local := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	o := Options{Config: cfg, Name: "decider/a", Now: func() time.Time { return local }, Stats: &Stats{}}
	d := &decider{o: o, ix: newIndex(cfg), live: true}
	ctx := context.Background()

	d.heard(heardMsg{key: msgKey{"detour.probe.eu.shop.west.w1", "r1"}, at: local})
	env, err := events.New(events.TypeOverrideSet, "alice@box", local, events.Override{App: "shop", Pool: "west", Endpoint: "w1",
		By: "alice@box", Reason: "region outage", Action: events.ActionForceDown})
	if err != nil {
		t.Fatal(err)
	}
	d.onState(ctx, delivery{subject: events.OverrideSubject("shop", "west", "w1"), seq: 1, stamp: local, env: env})
	w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
	if w1.st.Own != nil {
		t.Fatal("the override was applied before the result heard ahead of it was folded")
	}
	for _, after := range []time.Duration{100 * time.Millisecond, wireGrace, 5 * time.Second} {
		now := local.Add(after)
		d.onTick(ctx, now, 1)
		if applied := w1.st.Own != nil; applied != (after >= wireGrace) {
			t.Errorf("%s after STATE delivered it, with PROBES deliveries waiting: override applied %t, want %t", after, applied, after >= wireGrace)
		}
	}
}

package decider

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAnOverrideHeldBehindResultsHeardOnTheWireIsAppliedAfterThemAll: PROBES delivers nothing
// (its leader died); two passes of w1 are heard on the wire, then STATE delivers a force down,
// which waits for them. Their grace ends at one tick: both are folded from the wire and the
// override after them, the decider running on (it took the wait order off twice, and panicked).
func TestAnOverrideHeldBehindResultsHeardOnTheWireIsAppliedAfterThemAll(t *testing.T) {
	cfg := w1Config(t, "")
	local := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	o := Options{Config: cfg, Name: "decider/a", Now: func() time.Time { return local }, Stats: &Stats{}}
	d := handDriven(o, eventstest.Start(t).JS)
	ctx := context.Background()
	for _, id := range []string{"eu-1", "eu-2"} {
		pass := w1Pass(t, id, local)
		d.heard(heardMsg{key: msgKey{events.ProbeSubject("eu", "shop", "west", "w1"), pass.ID}, data: pass.Encode(), at: local})
	}
	down, err := events.New(events.TypeOverrideSet, "alice@box", local, events.Override{App: "shop", Pool: "west", Endpoint: "w1",
		By: "alice@box", Reason: "region outage", Action: events.ActionForceDown})
	if err != nil {
		t.Fatal(err)
	}
	d.onState(ctx, delivery{subject: events.OverrideSubject("shop", "west", "w1"), seq: 1, stamp: local, env: down})
	if len(d.held) != 1 {
		t.Fatal("the override was applied before the results heard ahead of it")
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("the tick that ends the results' grace panicked: %v", r)
			}
		}()
		d.onTick(ctx, local.Add(wireGrace), 0)
	}()
	w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
	if w1.st.Probed != events.StatusUp || w1.st.Status != events.StatusDown || len(d.held) != 0 || len(d.waiting) != 0 || len(d.waitOrder) != 0 {
		t.Errorf("w1 %s by its probes and %s in effect, %d overrides held, %d results waiting (%d in the wait order); "+
			"want up, down by the override, none held or waiting", w1.st.Probed, w1.st.Status, len(d.held), len(d.waiting), len(d.waitOrder))
	}
}

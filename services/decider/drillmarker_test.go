package decider_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// A drill's transition is known by its mark, not its wording: w1 is taken down by drill d1, then
// STATE records the drill's down again in other words (as a replica re-asserting the drill's
// status over a replica that had not read DRILLS yet words it: "re-asserted: …"). The decider is
// restarted while the drill is in force, and the drill is rolled back: w1, passing throughout,
// comes up at once, not a hold_down (3 s) later as a recovery of the probes' own down.
func TestADrillsTransitionWordedOtherwiseIsStillTheDrills(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1, p := drilledDown(t, srv, cfg)
	d1.stop()
	down, ok := lastW1(t, srv)
	if !ok || down.Type != events.TypeEndpointDown {
		t.Fatalf("w1's last transition is %q, want the drill's down", down.Type)
	}
	var mark struct{ Drill string }
	if err := down.Payload(&mark); err != nil || mark.Drill != "d1" {
		t.Errorf("the drill's down is marked %q (%v), want d1", mark.Drill, err)
	}
	// Written as a map: a transition of the version that marks drills, whatever this one reads.
	again, err := events.New(events.TypeEndpointDown, "decider/b", time.Now(), map[string]any{
		"app": "shop", "pool": "west", "endpoint": "w1", "address": "127.0.0.11:8081", "from": "down", "to": "down",
		"reason": "re-asserted: STATE recorded up against the probes; 1 of 1 voting regions see it up (quorum 0.5)",
		"drill":  "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.EndpointStateSubject("shop", "west", "w1"), again); err != nil {
		t.Fatal(err)
	}
	p.send("shop", "west", "w1", true)
	start(t, srv.JS, cfg, "decider/a")
	p.send("shop", "west", "w1", true)
	rolledBack := stamp(t, srv, events.StreamDrills,
		drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	got := passUntilTransitions(t, srv, p, 4, 5*time.Second, "5 s after the drill rolled back: want it up again")
	up, _ := lastW1(t, srv)
	if up.Type != events.TypeEndpointUp || up.Time.Sub(rolledBack) > time.Second {
		t.Errorf("w1's transitions are %q: want it up within 1 s of the drill's rollback at %s", got, rolledBack.Format(time.RFC3339Nano))
	}
	var upMark struct{ Drill string }
	if err := up.Payload(&upMark); err != nil || upMark.Drill != "" {
		t.Errorf("the up after the rollback is marked %q (%v), want no drill's", upMark.Drill, err)
	}
}

package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// A runner whose clock is 30 s behind the stream's: the drill is listed as starting when DRILLS
// stored its start and due back when the controllers will roll it back, 10 minutes after that,
// not 30 s earlier as the runner's clock put it.
func TestADrillIsListedOnTheStreamsClockNotItsRunners(t *testing.T) {
	stored := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	runner := stored.Add(-30 * time.Second)
	data, err := json.Marshal(events.DrillStarted{ID: "d1", Name: "west-outage", Apps: []string{"shop"}, Steps: 1, RollbackAt: runner.Add(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Drill{}
	foldDrill(byID, "detour.drill.d1", 1, stored, events.Envelope{ID: "e1", Type: events.TypeDrillStarted, Time: runner, Data: data})
	d := byID["d1"]
	if d == nil {
		t.Fatal("the drill's start was not folded")
	}
	if !d.Started.Equal(stored) || !d.RollbackAt.Equal(stored.Add(10*time.Minute)) {
		t.Errorf("started %s, rollback at %s; want %s and %s", d.Started, d.RollbackAt, stored, stored.Add(10*time.Minute))
	}
}

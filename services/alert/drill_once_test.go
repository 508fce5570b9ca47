package alert

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func TestADrillRolledBackForALostRunnerIsToldOnceThoughItsRunnerScoresItAfterAll(t *testing.T) {
	d := drills{}
	classify := func(typ string, data any) bool {
		t.Helper()
		e, err := events.New(typ, "test", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := d.Classify(events.DrillSubject("d1"), e)
		return ok
	}
	classify(events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "lose-west", Apps: []string{"shop"}})
	if !classify(events.TypeDrillRolledBack, events.DrillRolledBack{By: "controller-1", Reason: "runner_lost"}) {
		t.Fatal("the rollback for a lost runner is not a drill_result")
	}
	// The runner was only cut off: it records its scorecard once it can.
	if classify(events.TypeDrillScored, map[string]any{"name": "lose-west", "pass": false, "rolled_back": "runner_lost by controller-1"}) {
		t.Error("the drill's scorecard is told again after its rollback was")
	}
}

package drill_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
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
	v := drill.NewView()
	if _, err := v.Apply("detour.drill.d1", 1, stored, events.Envelope{ID: "e1", Type: events.TypeDrillStarted, Time: runner, Data: data}); err != nil {
		t.Fatal(err)
	}
	runs := v.Runs(10)
	if len(runs) != 1 {
		t.Fatalf("runs %+v, want the drill's", runs)
	}
	if d := runs[0]; !d.Started.Equal(stored) || !d.RollbackAt.Equal(stored.Add(10*time.Minute)) {
		t.Errorf("started %s, rollback at %s; want %s and %s", d.Started, d.RollbackAt, stored, stored.Add(10*time.Minute))
	}
}

// A drill is listed with the step in force until it rolls back, then with why and by whom, then
// with its scorecard's verdict; the drills in force come first, then the newest.
func TestTheRunsOfDrillsShowTheirStepRollbackAndVerdict(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := drill.NewView()
	seq := uint64(0)
	apply := func(id, typ string, data any) {
		t.Helper()
		e, err := events.New(typ, "test", t0, data)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if _, err := v.Apply(events.DrillSubject(id), seq, t0, e); err != nil {
			t.Fatal(err)
		}
	}
	west := events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"}
	apply("d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "old", By: "ops", Apps: []string{"shop"}, Steps: 1})
	apply("d1", events.TypeDrillStepStarted, events.DrillStep{Step: "pool shop/west", Failures: []events.Failure{west}})
	apply("d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "ops", Reason: "completed"})
	apply("d1", events.TypeDrillRenewed, events.DrillRenewed{By: "ops"}) // the runner's last, stored late
	apply("d1", events.TypeDrillScored, drill.Scorecard{Drill: "d1", Pass: true})
	apply("d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "older", By: "ops", Apps: []string{"web"}, Steps: 1})
	apply("d2", events.TypeDrillRolledBack, events.DrillRolledBack{By: "controller-1", Reason: "runner_lost"})
	apply("d3", events.TypeDrillStarted, events.DrillStarted{ID: "d3", Name: "now", By: "ops", Apps: []string{"shop"}, Steps: 2})
	apply("d3", events.TypeDrillStepStarted, events.DrillStep{Step: "pool shop/west", Failures: []events.Failure{west}})
	apply("d3", events.TypeDrillRenewed, events.DrillRenewed{By: "ops"})

	runs := v.Runs(10)
	if len(runs) != 3 || runs[0].ID != "d3" || runs[1].ID != "d2" || runs[2].ID != "d1" {
		t.Fatalf("runs %+v, want d3 (in force), d2, d1", runs)
	}
	if d := runs[0]; d.State != drill.StateInForce || d.Step != "pool shop/west" || len(d.Failures) != 1 || d.Failures[0] != west || d.Pass != nil {
		t.Errorf("d3 = %+v, want in force at pool shop/west", d)
	}
	if d := runs[1]; d.State != drill.StateRolledBack || d.RolledBack != "runner_lost by controller-1" || len(d.Failures) != 0 || d.Pass != nil {
		t.Errorf("d2 = %+v, want rolled back as its runner was lost", d)
	}
	if d := runs[2]; d.State != drill.StateScored || d.Pass == nil || !*d.Pass || d.RolledBack != "completed by ops" || len(d.Failures) != 0 {
		t.Errorf("d1 = %+v, want scored, passed, rolled back on completion", d)
	}
	if got := v.Runs(1); len(got) != 1 || got[0].ID != "d3" {
		t.Errorf("the first run %+v, want d3", got)
	}
}

// FuzzViewRuns: any DRILLS events, forged or malformed, fold without a crash into runs that are
// named by their subject, in a known state, with failures only while in force.
func FuzzViewRuns(f *testing.F) {
	f.Add("d1", 0, []byte(`{"id":"d1","name":"n","apps":["shop"],"steps":2}`), "d1", 1, []byte(`{"index":0,"step":"pool shop/west","failures":[{"kind":"pool","app":"shop","pool":"west"}]}`))
	f.Add("d1", 0, []byte(`{"id":"d1"}`), "d1", 3, []byte(`{"pass":"yes"}`))
	f.Add("a.b", 2, []byte(`[]`), "", 4, []byte(`null`))
	types := []string{events.TypeDrillStarted, events.TypeDrillStepStarted, events.TypeDrillRolledBack, events.TypeDrillScored, events.TypeDrillRenewed, "x"}
	f.Fuzz(func(t *testing.T, id1 string, t1 int, p1 []byte, id2 string, t2 int, p2 []byte) {
		v := drill.NewView()
		for i, ev := range []struct {
			id  string
			typ int
			p   []byte
		}{{id1, t1, p1}, {id2, t2, p2}} {
			e := events.Envelope{ID: "e", Type: types[uint(ev.typ)%uint(len(types))], Time: time.Unix(0, 0), Data: json.RawMessage(ev.p)}
			_, _ = v.Apply("detour.drill."+ev.id, uint64(i+1), time.Unix(0, 0), e)
		}
		for _, d := range v.Runs(10) {
			if d.Failures == nil || (d.ID != id1 && d.ID != id2) {
				t.Fatalf("drill %q folded as %+v", d.ID, d)
			}
			switch d.State {
			case drill.StateInForce:
				if v.Drill(d.ID) == nil {
					t.Fatalf("drill %q listed in force, not in force in the view", d.ID)
				}
			case drill.StateRolledBack, drill.StateScored:
				if len(d.Failures) != 0 {
					t.Fatalf("drill %q ended with failures in force: %+v", d.ID, d)
				}
			default:
				t.Fatalf("drill %q in state %q", d.ID, d.State)
			}
		}
	})
}

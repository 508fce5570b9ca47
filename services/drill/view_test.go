package drill_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
)

func TestADrillIsDueForRollbackAtMaxDurationOrWhenItsLeaseRunsOut(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := drill.NewView()
	apply := func(seq uint64, typ string, at time.Time, data any) {
		t.Helper()
		e, err := events.New(typ, "test", at, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Apply(events.DrillSubject("d1"), seq, at, e); err != nil {
			t.Fatal(err)
		}
	}
	apply(1, events.TypeDrillStarted, t0, events.DrillStarted{ID: "d1", RollbackAt: t0.Add(time.Minute), LeaseMS: 3000})
	apply(2, events.TypeDrillStepStarted, t0, events.DrillStep{Failures: []events.Failure{{Kind: events.FailEdge, Edge: "e"}}})
	for _, tc := range []struct {
		at     time.Duration
		renew  bool
		reason string
	}{
		{2 * time.Second, false, ""},
		{2 * time.Second, true, ""},  // renewed at 2s: the lease runs to 5s
		{4 * time.Second, false, ""}, // within the renewed lease
		{5500 * time.Millisecond, false, "runner_lost"},
	} {
		if tc.renew {
			apply(3, events.TypeDrillRenewed, t0.Add(tc.at), events.DrillRenewed{By: "runner"})
		}
		due := v.Due(t0.Add(tc.at))
		got := ""
		if len(due) == 1 {
			got = due[0].Reason
		}
		if got != tc.reason {
			t.Errorf("at %s: due %+v, want %q", tc.at, due, tc.reason)
		}
	}
	if due := v.Due(t0.Add(time.Minute)); len(due) != 1 || due[0].Reason != "max_duration" || due[0].Seq != 3 {
		t.Errorf("at max_duration: %+v, want a rollback expecting seq 3", due)
	}
	if _, ok := v.Edge("e"); !ok {
		t.Error("the drilled edge is not failed")
	}
	e, _ := events.New(events.TypeDrillRolledBack, "test", t0, events.DrillRolledBack{By: "c", Reason: "max_duration"})
	if changed, err := v.Apply(events.DrillSubject("d1"), 4, t0, e); err != nil || !changed {
		t.Fatalf("the rollback changed nothing (%v)", err)
	}
	if _, ok := v.Edge("e"); ok || len(v.Due(t0.Add(time.Hour))) != 0 || !v.Ended("d1") {
		t.Error("a rolled-back drill is still in force")
	}
}

func TestGraceCountsADrillsLeaseFromWhenItsRenewalsCouldBeStoredAgain(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := drill.NewView()
	e, err := events.New(events.TypeDrillStarted, "test", t0, events.DrillStarted{ID: "d1", RollbackAt: t0.Add(time.Minute), LeaseMS: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(events.DrillSubject("d1"), 1, t0, e); err != nil {
		t.Fatal(err)
	}
	// DRILLS stored nothing from t0 to t0+5s: the lease counts from then.
	v.Grace(t0.Add(5 * time.Second))
	if due := v.Due(t0.Add(7 * time.Second)); len(due) != 0 {
		t.Errorf("2s after the grace: %+v, want nothing due", due)
	}
	// A renewal the runner dated before the grace does not shorten it.
	r, err := events.New(events.TypeDrillRenewed, "test", t0.Add(time.Second), events.DrillRenewed{By: "runner"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(events.DrillSubject("d1"), 2, r.Time, r); err != nil {
		t.Fatal(err)
	}
	if due := v.Due(t0.Add(7 * time.Second)); len(due) != 0 {
		t.Errorf("after an older renewal: %+v, want nothing due", due)
	}
	if due := v.Due(t0.Add(8500 * time.Millisecond)); len(due) != 1 || due[0].Reason != "runner_lost" || due[0].Seq != 2 {
		t.Errorf("a lease after the grace: %+v, want runner_lost expecting seq 2", due)
	}
}

func TestADrillWhoseRunnersClockIsOffIsDueByWhenDRILLSStoredItsEvents(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := drill.NewView()
	// The runner's clock is 10s behind the stream's: it dates its start t0−10s, and its
	// max_duration of 1 min from then.
	behind := t0.Add(-10 * time.Second)
	e, err := events.New(events.TypeDrillStarted, "test", behind, events.DrillStarted{ID: "d1", RollbackAt: behind.Add(time.Minute), LeaseMS: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(events.DrillSubject("d1"), 1, t0, e); err != nil {
		t.Fatal(err)
	}
	if due := v.Due(t0.Add(time.Second)); len(due) != 0 {
		t.Errorf("1s after the start was stored: %+v, want nothing due", due)
	}
	if due := v.Due(t0.Add(time.Minute)); len(due) != 1 || due[0].Reason != "max_duration" {
		t.Errorf("a minute after the start was stored: %+v, want max_duration", due)
	}
}

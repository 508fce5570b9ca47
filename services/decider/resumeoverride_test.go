package decider

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/decide"
)

// TestAHoldDownAVersionLengthenedIsResumedUnderAForceUpUntilItsNewEnd: STATE records w1's
// hold-down begun under a hold_down of 3s; a version raised it to 10s while it ran, which a live
// decider applies to the hold-down under way. A decider starting 5 s into it finds w1 forced up:
// it resumes the hold-down, and the override cleared 6 s into it takes w1 down until it ends, as
// the live decider does; it does not take the 3 s it began under to have run out already.
func TestAHoldDownAVersionLengthenedIsResumedUnderAForceUpUntilItsNewEnd(t *testing.T) {
	d := handDriven(Options{Config: w1Config(t, "    hold_down: 10s\n"), Name: "decider/a", Stats: &Stats{}}, nil)
	w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
	p := w1.pool.app.policy
	began := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	forced := events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionForceUp, By: "alice@laptop"}
	w1.st.SetOverride(decide.ScopeEndpoint, forced, "o1", began.Add(time.Second), p)
	w1.status, w1.since = events.StatusUp, began.Add(time.Second)
	w1.hold.holdRecord = holdRecord{seq: 1, since: began, cause: "eu-1", address: w1.cfg.Address, length: 3 * time.Second}
	w1.st.Restore(w1.status)
	w1.resumeHoldDown(began.Add(5 * time.Second))

	w1.st.Observe(decide.Result{ID: "eu-9", Region: "eu", At: began.Add(5 * time.Second), OK: true}, p)
	if dec, ok := w1.st.SetOverride(decide.ScopeEndpoint, events.Override{By: "alice@laptop"}, "o2", began.Add(6*time.Second), p); !ok || dec.To != events.StatusDown {
		t.Fatalf("clearing the override 6 s into the hold-down of 10s decided %+v, %v; want w1 down until it ends", dec, ok)
	}
	if dec, ok := w1.st.Expire(began.Add(10*time.Second), p); !ok || dec.To != events.StatusUp || dec.Cause != "eu-1" {
		t.Fatalf("the hold-down's end decided %+v, %v; want w1 up 10 s after it began, caused by eu-1", dec, ok)
	}
}

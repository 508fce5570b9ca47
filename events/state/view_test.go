package state_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
)

func transition(t *testing.T, typ string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), events.Transition{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestTheViewFollowsTheLastTransitionOfEachSubjectOnce(t *testing.T) {
	v := state.NewView()
	subj := events.EndpointStateSubject("shop", "west", "a")
	steps := []struct {
		seq     uint64
		typ     string
		changed bool
		want    events.Status
	}{
		{1, events.TypeEndpointUp, true, events.StatusUp},
		{2, events.TypeEndpointDown, true, events.StatusDown},
		{2, events.TypeEndpointUp, false, events.StatusDown}, // a redelivery of seq 2 changes nothing
		{1, events.TypeEndpointUp, false, events.StatusDown}, // nor does an older event
		{5, events.TypeEndpointDrained, true, events.StatusDrained},
	}
	for i, s := range steps {
		changed, err := v.Apply(subj, s.seq, transition(t, s.typ))
		if err != nil || changed != s.changed || v.Endpoint("shop", "west", "a") != s.want {
			t.Fatalf("step %d: changed=%v err=%v status=%q, want changed=%v status=%q", i, changed, err, v.Endpoint("shop", "west", "a"), s.changed, s.want)
		}
	}
	if v.LastSeq() != 5 {
		t.Errorf("LastSeq = %d, want 5", v.LastSeq())
	}
}

// TestAHoldDownBegunChangesNoStatus: the deciders record on an endpoint's hold-down subject when
// its hold-down began; the view skips it, without an error a follower would log as malformed.
func TestAHoldDownBegunChangesNoStatus(t *testing.T) {
	v := state.NewView()
	if _, err := v.Apply(events.EndpointStateSubject("shop", "west", "a"), 1, transition(t, events.TypeEndpointDown)); err != nil {
		t.Fatal(err)
	}
	for seq, typ := range map[uint64]string{2: events.TypeHoldDownStarted, 3: events.TypeHoldDownCancelled} {
		changed, err := v.Apply(events.HoldDownSubject("shop", "west", "a"), seq, transition(t, typ))
		if err != nil || changed {
			t.Errorf("%s: changed=%v err=%v, want unchanged and no error", typ, changed, err)
		}
	}
	if got := v.Endpoint("shop", "west", "a"); got != events.StatusDown {
		t.Errorf("endpoint %q after its hold-down events, want down", got)
	}
}

func TestTheViewRefusesWhatIsNotAStateEvent(t *testing.T) {
	if _, err := state.NewView().Apply("detour.state.pool.a.b", 1, transition(t, events.TypeProbeCompleted)); err == nil {
		t.Fatal("a probe result was folded as a state event")
	}
}

func TestAPoolIsAvailableWhileMinAvailableEndpointsServe(t *testing.T) {
	p := &config.Pool{Name: "west", MinAvailable: config.MinAvailable{Percent: 50},
		Endpoints: []config.Endpoint{{Name: "a"}, {Name: "b"}, {Name: "c"}}}
	v := state.NewView()
	if !v.PoolAvailable("shop", p) || len(v.ServingEndpoints("shop", p)) != 3 {
		t.Fatal("a pool nobody has decided on yet must serve every endpoint")
	}
	for seq, ep := range []string{"a", "b"} {
		if _, err := v.Apply(events.EndpointStateSubject("shop", "west", ep), uint64(seq+1), transition(t, events.TypeEndpointDown)); err != nil {
			t.Fatal(err)
		}
		want := ep == "a" // 2 of 3 serving meets 50 %; 1 of 3 does not
		if got := v.PoolAvailable("shop", p); got != want {
			t.Errorf("after %s went down: available=%v, want %v", ep, got, want)
		}
	}
}

func TestOverridesAreKeptUntilCleared(t *testing.T) {
	v := state.NewView()
	o := events.Override{App: "shop", Pool: "west", Action: events.ActionDrain, Reason: "deploy", By: "ops"}
	set, _ := events.New(events.TypeOverrideSet, "test", time.Now(), o)
	clr, _ := events.New(events.TypeOverrideCleared, "test", time.Now(), o)
	subj := events.OverrideSubject("shop", "west", "")
	if _, err := v.Apply(subj, 1, set); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Override("shop", "west", "a"); !ok || got.Action != events.ActionDrain {
		t.Fatalf("an endpoint of a drained pool: override %+v, %v", got, ok)
	}
	if _, err := v.Apply(subj, 2, clr); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Override("shop", "west", "a"); ok || len(v.Overrides()) != 0 {
		t.Fatal("the override is still in force after it was cleared")
	}
}

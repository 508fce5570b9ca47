package state_test

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/state"
)

func endpointDown(t *testing.T, ep string, from events.Status) events.Envelope {
	t.Helper()
	return event(t, events.TypeEndpointDown, events.Transition{App: "shop", Pool: "west", Endpoint: ep, From: from, To: events.StatusDown})
}

func batchOf(t *testing.T, index uint64, subjects []string, es ...events.Envelope) events.Envelope {
	t.Helper()
	b := events.StateBatch{Index: index}
	for i, e := range es {
		b.Items = append(b.Items, events.ItemOf(subjects[i], 0, e))
	}
	return event(t, events.TypeStateBatch, b)
}

func TestABatchIsFoldedAsEachOfItsTransitionsOnItsOwnSubject(t *testing.T) {
	a, b := events.EndpointStateSubject("shop", "west", "a"), events.EndpointStateSubject("shop", "west", "b")
	pool := events.PoolStateSubject("shop", "west")
	poolDown := event(t, events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	one, lone := state.NewView(), state.NewView()
	// A stream mixing lone events (as older deciders wrote them) and a batch.
	if _, err := one.Apply(a, 3, event(t, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "a", To: events.StatusUp})); err != nil {
		t.Fatal(err)
	}
	if _, err := lone.Apply(a, 3, event(t, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "a", To: events.StatusUp})); err != nil {
		t.Fatal(err)
	}
	downA, downB := endpointDown(t, "a", events.StatusUp), endpointDown(t, "b", "")
	batch := batchOf(t, 0, []string{a, b, pool}, downA, downB, poolDown)
	if why := one.Unexpected(events.BatchSubject(0), 10, batch); why != "" {
		t.Errorf("the decider's batch is unexpected: %s", why)
	}
	changed, err := one.Apply(events.BatchSubject(0), 10, batch)
	if err != nil || !changed {
		t.Fatalf("Apply(batch) = %v, %v; want changed", changed, err)
	}
	for _, x := range []struct {
		subject string
		e       events.Envelope
	}{{a, downA}, {b, downB}, {pool, poolDown}} {
		if _, err := lone.Apply(x.subject, 10, x.e); err != nil {
			t.Fatal(err)
		}
	}
	for _, subject := range []string{a, b, pool} {
		got, _ := one.Subject(subject)
		want, _ := lone.Subject(subject)
		if got != want {
			t.Errorf("%s: batch gave %+v, lone events %+v", subject, got, want)
		}
	}
	if one.LastSeq() != 10 {
		t.Errorf("LastSeq = %d, want 10", one.LastSeq())
	}
	if changed, _ := one.Apply(events.BatchSubject(0), 10, batch); changed {
		t.Error("the batch applied twice changed the view again")
	}
}

func TestACheckpointOlderThanWhatTheViewHoldsChangesNothing(t *testing.T) {
	a := events.EndpointStateSubject("shop", "west", "a")
	v := state.NewView()
	if _, err := v.Apply(events.BatchSubject(5), 50, batchOf(t, 5, []string{a}, endpointDown(t, "a", events.StatusUp))); err != nil {
		t.Fatal(err)
	}
	up := event(t, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "a", To: events.StatusUp})
	b := events.EndpointStateSubject("shop", "west", "b")
	cp := event(t, events.TypeStateCheckpoint, events.StateCheckpoint{Index: 4, Upto: 40, Parts: 1,
		Items: []events.Item{events.ItemOf(a, 30, up), events.ItemOf(b, 31, up)}})
	if why := v.Unexpected(events.CheckpointSubject(0), 60, cp); why != "" {
		t.Errorf("a checkpoint is checked: %s", why)
	}
	if _, err := v.Apply(events.CheckpointSubject(0), 60, cp); err != nil {
		t.Fatal(err)
	}
	if v.Endpoint("shop", "west", "a") != events.StatusDown {
		t.Error("a checkpoint restating seq 30 overrode the batch at seq 50")
	}
	if e, _ := v.Subject(b); e.Status != events.StatusUp || e.Seq != 31 {
		t.Errorf("b from the checkpoint: %+v, want up at seq 31", e)
	}
}

func TestAForgedItemInABatchIsUnexpectedAndAMalformedBatchIsNotApplied(t *testing.T) {
	a, b := events.EndpointStateSubject("shop", "west", "a"), events.EndpointStateSubject("shop", "west", "b")
	v := state.NewView()
	if _, err := v.Apply(a, 1, event(t, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "a", To: events.StatusUp})); err != nil {
		t.Fatal(err)
	}
	forged := batchOf(t, 0, []string{a, b}, endpointDown(t, "a", events.StatusDown), endpointDown(t, "w9", ""))
	why := v.Unexpected(events.BatchSubject(0), 2, forged)
	want := "detour.state.endpoint.shop.west.a: from down, but STATE last recorded up; detour.state.endpoint.shop.west.b: payload names shop.west.w9, not the subject's shop.west.b"
	if why != want {
		t.Errorf("Unexpected:\n got %s\nwant %s", why, want)
	}
	bad := batchOf(t, 0, []string{a, a}, endpointDown(t, "a", events.StatusUp), endpointDown(t, "a", events.StatusUp))
	if _, err := v.Apply(events.BatchSubject(0), 3, bad); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("a batch naming a subject twice: %v", err)
	}
	if why := v.Unexpected(events.BatchSubject(0), 3, bad); !strings.Contains(why, "appears twice") {
		t.Errorf("Unexpected of a malformed batch = %q", why)
	}
	if v.Endpoint("shop", "west", "a") != events.StatusUp || v.LastSeq() != 1 {
		t.Error("a malformed batch was applied in part")
	}
}

package drill_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// subjectEvents returns the types of the events DRILLS holds on subject, in order.
func subjectEvents(t *testing.T, s jetstream.Stream, subject string) []string {
	t.Helper()
	var types []string
	for seq := uint64(1); ; {
		m, err := s.GetMsg(context.Background(), seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return types
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		types, seq = append(types, e.Type), m.Sequence+1
	}
}

// A drill renews its lease every third of it for as long as it runs: DRILLS keeps the last
// renewal only, and every other event of the drill, so a long drill leaves its history and not
// a renewal a second.
func TestDRILLSKeepsADrillsLastRenewalOnlyAndEveryOtherEvent(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: renewing\nsteps: [{fail: pool shop/west, rto: 2s}]")
	o.Lease, o.Hold = 600*time.Millisecond, 2*time.Second
	var id string
	o.Started = func(started string) { id = started }
	sc, err := drill.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sc.RolledBack != "completed by tester" {
		t.Fatalf("rolled back %q, want completed by tester", sc.RolledBack)
	}
	st, err := s.js.Stream(context.Background(), events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	if deleted := st.CachedInfo().State.NumDeleted; deleted < 5 {
		t.Errorf("DRILLS had %d messages deleted, want the renewals before the last (the runner renewed every 200ms for over 2s)", deleted)
	}
	types := subjectEvents(t, st, events.DrillSubject(id))
	renewals := 0
	var others []string
	for _, typ := range types {
		if typ == events.TypeDrillRenewed {
			renewals++
		} else {
			others = append(others, typ)
		}
	}
	want := []string{events.TypeDrillStarted, events.TypeDrillStepStarted, events.TypeDrillRolledBack, events.TypeDrillScored}
	if renewals != 1 || len(others) != len(want) {
		t.Fatalf("the drill's subject holds %q, want its %d events and its last renewal", types, len(want))
	}
	for i := range want {
		if others[i] != want[i] {
			t.Errorf("event %d is %s, want %s", i, others[i], want[i])
		}
	}
	v, err := drill.ReadDrills(context.Background(), s.js)
	if err != nil {
		t.Fatal(err)
	}
	if runs := v.Runs(10); len(runs) != 1 || runs[0].State != drill.StateScored || runs[0].Step != "fail pool shop/west" {
		t.Errorf("the drills folded from DRILLS: %+v, want the drill scored after its step", runs)
	}
}

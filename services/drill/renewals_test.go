package drill_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go"
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

// stoppedRenewal is a client through which the drill's second renewal is stored, and its answer
// then held until the runner stops renewing (its context ends): the answer comes as the stop
// does (acked) or is lost to it.
type stoppedRenewal struct {
	jetstream.JetStream
	acked    bool
	renewals atomic.Int32
	// held is closed once the renewal's answer is held, stopped once the stop ended it (and not
	// the end of the attempt to store it).
	held    chan struct{}
	stopped atomic.Bool
}

func (s *stoppedRenewal) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := s.JetStream.PublishMsg(ctx, m, opts...)
	if e, derr := events.Decode(m.Data); err != nil || derr != nil || e.Type != events.TypeDrillRenewed || s.renewals.Add(1) != 2 {
		return ack, err
	}
	close(s.held)
	<-ctx.Done()
	s.stopped.Store(errors.Is(ctx.Err(), context.Canceled))
	if s.acked {
		return ack, nil
	}
	return nil, ctx.Err()
}

// The runner stops renewing (its last step held, it rolls back) just as a renewal is stored:
// its answer arrives with the stop, or is lost to it. DRILLS still keeps the drill's last
// renewal only, not the one before as well.
func TestARenewalStoredAsTheRunnerStopsRenewingStillReplacesTheOneBefore(t *testing.T) {
	s := startStack(t)
	for _, acked := range []bool{true, false} {
		t.Run(map[bool]string{true: "answered", false: "answer lost"}[acked], func(t *testing.T) {
			o := s.options(t, "name: stopping\nsteps: [{fail: pool shop/west, rto: 2s}]")
			// Renewals at 1 s and 2 s; the stop comes after the step and the 2.2 s hold, while the
			// runner still waits (for 1 s) for the answer to the renewal stored at 2 s.
			o.Lease, o.Hold = 3*time.Second, 2200*time.Millisecond
			js := &stoppedRenewal{JetStream: s.js, acked: acked, held: make(chan struct{})}
			o.JS = js
			var id string
			o.Started = func(started string) { id = started }
			sc, err := drill.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-js.held:
			default:
				t.Fatal("the runner stopped before its second renewal")
			}
			if !js.stopped.Load() {
				t.Fatal("the runner gave up waiting for the renewal's answer before it stopped: its step took over 0.8 s to switch")
			}
			if sc.RolledBack != "completed by tester" {
				t.Fatalf("rolled back %q, want completed by tester", sc.RolledBack)
			}
			renewals := 0
			st, err := s.js.Stream(context.Background(), events.StreamDrills)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range subjectEvents(t, st, events.DrillSubject(id)) {
				if typ == events.TypeDrillRenewed {
					renewals++
				}
			}
			if renewals != 1 {
				t.Errorf("DRILLS keeps %d renewals of the drill, want its last one", renewals)
			}
		})
	}
}

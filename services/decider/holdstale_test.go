package decider

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAReplicaLaggingPastTheDuplicateWindowRecordsNoStaleHoldDownStart: w1 is down; its hold-down
// began at a pass, and STATE recorded that start, then its cancellation (a failure followed). A
// replica lagging more than STATE's duplicate window behind PROBES folds the pass only now: it
// must not append that start again, after the cancellation, where a decider starting later
// would resume it and bring w1 up at once. Nor a start older than one STATE records already.
func TestAReplicaLaggingPastTheDuplicateWindowRecordsNoStaleHoldDownStart(t *testing.T) {
	cfg := w1Config(t, "    hold_down: 10m\n")
	for _, c := range []struct {
		name  string
		later string // the record STATE holds after the start the lagging replica folds
	}{
		{"a start after its cancellation", events.TypeHoldDownCancelled},
		{"a start older than the one recorded", events.TypeHoldDownStarted},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := eventstest.Start(t)
			ctx := context.Background()
			began := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
			local := began.Add(5 * time.Minute) // the replica lags 5 minutes behind PROBES
			o := Options{Config: cfg, Name: "decider/b", Now: func() time.Time { return local }, Stats: &Stats{}, Replay: 2 * time.Minute}
			d := handDriven(o, srv.JS)
			w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
			w1.status, w1.since = events.StatusDown, began.Add(-time.Minute)
			w1.st.Restore(events.StatusDown)

			pass := w1Pass(t, "eu-1", began)
			// What the leading replica recorded, and the lagging one's STATE reader delivered;
			// stored under another Nats-Msg-Id, as though STATE's duplicate window had passed.
			h := events.HoldDown{App: "shop", Pool: "west", Endpoint: "w1", Address: "127.0.0.11:8081", HoldDown: "10m0s"}
			record := func(typ, cause string, at time.Time) {
				t.Helper()
				e, err := events.Derived(typ, "decider/a", cause, w1.holdSubject, at, h)
				if err != nil {
					t.Fatal(err)
				}
				m := nats.NewMsg(w1.holdSubject)
				m.Data = e.Encode()
				ack, err := srv.JS.PublishMsg(ctx, m, jetstream.WithMsgID("past the window "+e.ID))
				if err != nil {
					t.Fatal(err)
				}
				w1.recordHoldDown(ack.Sequence, e)
			}
			record(events.TypeHoldDownStarted, "eu-1", began)
			if c.later == events.TypeHoldDownCancelled {
				record(events.TypeHoldDownCancelled, "eu-1", began.Add(time.Second))
			} else {
				record(events.TypeHoldDownStarted, "eu-3", began.Add(2*time.Second))
			}
			rs, err := events.DecodeProbes(pass.Encode())
			if err != nil {
				t.Fatal(err)
			}
			d.fold(ctx, rs, began, "eu", false)
			if since, cause := w1.st.HoldDown(); !since.Equal(began) || cause != "eu-1" {
				t.Fatalf("the lagging replica's view has w1's hold-down begun at %s by %s, want %s by eu-1", since, cause, began)
			}
			eventstest.Eventually(t, 5*time.Second, func() bool { d.landHoldDowns(); return len(d.holdAppends) == 0 },
				"the hold-down events were not answered")
			last, _, ok, err := events.Last(ctx, srv.Stream(t, events.StreamState), w1.holdSubject)
			if err != nil || !ok {
				t.Fatalf("STATE holds no hold-down event of w1: %v", err)
			}
			if last.Type != c.later || last.Source != "decider/a" {
				t.Errorf("STATE's last hold-down event of w1 is %s from %s, begun %s; want the %s decider/a recorded",
					last.Type, last.Source, last.Time.Format(time.RFC3339), c.later)
			}
		})
	}
}

package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAReplicaBehindTheLeaderDoesNotDateTheStatusBeforeTheWindow: in a cluster of four, a
// replay run on the node that holds no replica of STATE has its direct gets answered by any of
// the three, one of them cut from the leader after w2 went up, and missing w2's down that
// followed before the window. Every replay re-decides w2 from down, as the leader holds it; one
// in three, answered by the replica behind, re-decided it from up, and the what-if left out w2
// coming back.
func TestAReplicaBehindTheLeaderDoesNotDateTheStatusBeforeTheWindow(t *testing.T) {
	const replays = 20
	c := eventstest.StartCluster(t, 4)
	c.Streams(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, js := eventstest.ConnectJS(t, c.URLs[0])
	var st jetstream.Stream
	var err error
	// PROBES keeps one replica, which no cut puts behind: the window's results are read whole,
	// and only STATE's replicas differ.
	eventstest.Eventually(t, 10*time.Second, func() bool {
		if st, err = js.Stream(ctx, events.StreamProbes); err != nil {
			return false
		}
		sc := st.CachedInfo().Config
		sc.Replicas = 1
		_, err = js.UpdateStream(ctx, sc)
		return err == nil
	}, "PROBES down to one replica: %v", &err)
	eventstest.Eventually(t, 10*time.Second, func() bool {
		st, err = js.Stream(ctx, events.StreamState)
		return err == nil
	}, "STATE: %v", &err)
	leader, lagging, _, outside := c.ReplicasOutside(t, st)
	_, js = eventstest.ConnectJS(t, c.URLs[outside])
	publish := func(subject string, typ string, data any) {
		t.Helper()
		e, err := events.New(typ, "test", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		eventstest.Eventually(t, 10*time.Second, func() bool {
			_, err = events.Publish(ctx, js, subject, e)
			return !errors.Is(err, jetstream.ErrNoStreamResponse)
		}, "%s answering a publish", subject)
		if err != nil {
			t.Fatal(err)
		}
	}
	w2 := events.EndpointStateSubject("shop", "west", "w2")
	publish(w2, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "w2", From: events.StatusDown, To: events.StatusUp})
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(lagging, events.StreamState) == 1 }, "n%d holding w2's up", lagging)
	c.DirectGets(t, events.StreamState)
	c.Cut(leader, lagging)
	publish(w2, events.TypeEndpointDown, events.Transition{App: "shop", Pool: "west", Endpoint: "w2", From: events.StatusUp, To: events.StatusDown})

	cfg := eventstest.Config(t, flapYAML)
	s, err := replay.ParseSettings("rise=1,hold_down=0s")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now().Add(replay.Warmup(cfg, &s) + 10*time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(from) }, "the window to open")
	for _, region := range []string{"a", "b", "c"} {
		r := events.ProbeResult{ID: region + "-1", At: time.Now(), App: "shop", Pool: "west", Endpoint: "w2", Region: region, Prober: "p", Check: "http", OK: true}
		publish(events.ProbeSubject(region, "shop", "west", "w2"), events.TypeProbeCompleted, r)
	}

	for i := range replays {
		var out bytes.Buffer
		o := replay.Options{Filter: replay.Filter{From: from, Endpoint: "w2"}, Config: cfg, WhatIf: &s, Format: "json"}
		if err := replay.Run(ctx, js, o, &out); err != nil {
			t.Fatalf("replay %d: %v", i, err)
		}
		back := false
		for dec := json.NewDecoder(&out); dec.More(); {
			var line struct {
				Kind   string
				WhatIf *replay.Change `json:"what_if"`
			}
			if err := dec.Decode(&line); err != nil {
				t.Fatal(err)
			}
			back = back || line.Kind == "what_if" && line.WhatIf != nil && line.WhatIf.From == events.StatusDown && line.WhatIf.To == events.StatusUp
		}
		if !back {
			t.Fatalf("replay %d of %d does not re-decide w2 from the down STATE's leader holds before the window:\n%s", i+1, replays, out.String())
		}
	}
}

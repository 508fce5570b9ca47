package replay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/replay"
	"github.com/rs/zerolog"
)

// TestAWindowEndingAtATransitionsTimeShowsIt: a user copies the time of a transition from the
// timeline into --to. STATE stored the transition a moment after its time (the time of the
// result that completed it): the window still holds it, and the what-if with the live
// thresholds says it is the same, not one that "would happen only with the what-if settings".
func TestAWindowEndingAtATransitionsTimeShowsIt(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(flapYAML, "fall: 2, rise: 2", "fall: 1, rise: 1", 1)
	cfg, err := config.Publish(context.Background(), srv.JS, "shop.yaml", []byte(doc), "test")
	if err != nil {
		t.Fatal(err)
	}
	o := decider.Options{JS: srv.JS, Config: cfg, Name: "d1", Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
	eventstest.Run(t, "decider", func(ctx context.Context) error { return decider.Run(ctx, o) })
	eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "the decider did not go live")
	r := events.ProbeResult{ID: "a-1", At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "a", Prober: "p", Check: "http"}
	e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.ProbeSubject("a", "shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
	var down events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool {
		st, err := srv.JS.Stream(context.Background(), events.StreamState)
		if err != nil {
			return false
		}
		down, _, _, err = events.Last(context.Background(), st, events.EndpointStateSubject("shop", "west", "w1"))
		return err == nil && down.Type == events.TypeEndpointDown
	}, "w1 to go down")

	s, err := replay.ParseSettings("fall=1")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := replay.Run(context.Background(), srv.JS, replay.Options{Filter: replay.Filter{To: down.Time}, Config: cfg, WhatIf: &s}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "unknown → down: a: 1 consecutive failures (fall 1)") || !strings.Contains(out.String(), "1 same, 0 earlier, 0 later, 0 would not happen, 0 new") {
		t.Errorf("replay --to %s (w1's down) does not show it, or not as the same:\n%s", down.Time.Format(time.RFC3339Nano), out.String())
	}
}

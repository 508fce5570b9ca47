package replay_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/replay"
)

// TestReplaysRunInAScriptLeaveNoConsumerBehind: an operator running `detour replay` in a loop
// finds no consumer of its on the streams once each run has ended (`nats consumer ls STATE`
// empty), so that a stream's or an account's consumer limit is never reached by past replays:
// each left one consumer a stream read, until the server dropped it 5 minutes later, and the
// 100th run of a loop against a limit failed with "maximum consumers limit reached".
func TestReplaysRunInAScriptLeaveNoConsumerBehind(t *testing.T) {
	ctx := context.Background()
	srv := eventstest.Start(t)
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(flapYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	publishTransitions(t, srv.JS, "w1", 3)
	from := time.Now()
	publishTransitions(t, srv.JS, "w1", 1)
	s, err := replay.ParseSettings("fall=1")
	if err != nil {
		t.Fatal(err)
	}
	for run := range 3 {
		_, js := eventstest.ConnectJS(t, srv.URL)
		o := replay.Options{Filter: replay.Filter{From: from}, Config: cfg, WhatIf: &s, Versions: true, Format: "text"}
		if err := replay.Run(ctx, js, o, io.Discard); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, name := range []string{events.StreamProbes, events.StreamState, events.StreamDNS, events.StreamRoutes, events.StreamDrills, events.StreamConfig} {
			var left []string
			for c := range srv.Stream(t, name).ListConsumers(ctx).Info() {
				left = append(left, c.Name)
			}
			if len(left) > 0 {
				t.Errorf("after run %d, %s still holds the replay's consumers %v", run, name, left)
			}
		}
	}
}

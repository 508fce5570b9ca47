package main

import (
	"strings"
	"testing"
)

func TestAClientThatReconnectedInAStormCountsItsNewConnectionWhole(t *testing.T) {
	t0 := traffic{conns: map[uint64]counted{1: {10, 20, 100, 200}, 2: {5, 5, 50, 50}},
		names: map[uint64]string{1: "prober-p1", 2: "decider"}, streams: map[string]uint64{"STATE": 7}}
	t1 := traffic{conns: map[uint64]counted{3: {3, 4, 30, 40}, 2: {8, 9, 80, 90}},
		names: map[uint64]string{3: "prober-p1", 2: "decider"}, streams: map[string]uint64{"STATE": 9}}
	got := t1.since(t0).String()
	for _, want := range []string{"STATE 2 ", "published 6 messages", "received 8 ", "prober-p1 3 / 4 ", "decider 3 / 4 "} {
		if !strings.Contains(got, want) {
			t.Errorf("traffic printed as %q, want it to hold %q", got, want)
		}
	}
}

package events_test

import (
	"testing"

	"github.com/detourdev/detour/events"
)

func TestOnlyAProbersBatchOfEdgeListenerResultsIsAnEdgeProbeBatch(t *testing.T) {
	for _, tt := range []struct {
		subject string
		want    bool
	}{
		{events.EdgeProbeBatchSubject("us-west", "p1"), true},
		{events.ProbeBatchSubject("us-west", "p1"), false},
		{events.ProbeSubject("us-west", "shop", events.EdgeProbePool, "edge-west"), false}, // a lone result
		{events.ProbeSubject("us-west", "shop", "west", "w1"), false},
		{"detour.probe.us-west._edge", false},
		{"detour.state.us-west._edge.p1", false},
	} {
		if got := events.IsEdgeProbeBatch(tt.subject); got != tt.want {
			t.Errorf("IsEdgeProbeBatch(%s) = %v, want %v", tt.subject, got, tt.want)
		}
	}
}

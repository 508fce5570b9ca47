package decider

import (
	"testing"

	"github.com/detourdev/detour/events"
)

func TestTheDeciderLeavesTheEdgeListenersBatchesUndecoded(t *testing.T) {
	decode := probeDecoder()
	edge := delivery{subject: events.EdgeProbeBatchSubject("us-west", "p1"), data: []byte("not even JSON")}
	decode(&edge)
	if edge.err != nil || edge.results != nil {
		t.Errorf("an edge-listener batch decoded to %v, %v; want it skipped", edge.results, edge.err)
	}
	endpoints := delivery{subject: events.ProbeBatchSubject("us-west", "p1"), data: []byte("not even JSON")}
	if decode(&endpoints); endpoints.err == nil {
		t.Error("a malformed batch of endpoint results decoded without an error")
	}
}

package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
)

func TestDecodeEdgeChecksTakesOnlyTheSubjectsRegionsEdgeListenerResults(t *testing.T) {
	edge := func(region, app, endpoint string) events.ProbeResult {
		return events.ProbeResult{App: app, Pool: events.EdgeProbePool, Endpoint: endpoint, Region: region, OK: true}
	}
	batch := func(rs ...events.ProbeResult) []byte {
		return heartbeatMsg(t, events.TypeProbeBatchCompleted, events.ProbeBatch{Region: "us-west", Prober: "p1", Results: rs})
	}
	one := events.ProbeSubject("us-west", "shop", events.EdgeProbePool, "edge-west")
	batched := events.EdgeProbeBatchSubject("us-west", "p1")
	tests := []struct {
		name, subject string
		data          []byte
		want          string // the error, or the results' edges
	}{
		{name: "a lone result on its own subject", subject: one,
			data: heartbeatMsg(t, events.TypeProbeCompleted, edge("us-west", "shop", "edge-west")), want: "edge-west"},
		{name: "a batch of the region's edge listeners", subject: batched,
			data: batch(edge("us-west", "shop", "edge-west"), edge("us-west", "cart", "edge-east")), want: "edge-west edge-east"},
		{name: "a batch result without a region takes the batch's", subject: batched,
			data: batch(edge("", "shop", "edge-west")), want: "edge-west"},
		{name: "a lone result naming another edge", subject: one,
			data: heartbeatMsg(t, events.TypeProbeCompleted, edge("us-west", "shop", "edge-east")),
			want: "decode edge check: malformed event: result of shop/_edge/edge-east from us-west does not match subject detour.probe.us-west.shop._edge.edge-west"},
		{name: "a batch holding another region's result", subject: batched,
			data: batch(edge("us-west", "shop", "edge-west"), edge("us-east", "shop", "edge-west")),
			want: "decode edge check: malformed event: result of shop/_edge/edge-west from us-east does not match subject detour.probe.us-west._edge.p1"},
		{name: "a batch holding an endpoint's result", subject: batched,
			data: batch(events.ProbeResult{App: "shop", Pool: "west", Endpoint: "w1", Region: "us-west"}),
			want: "decode edge check: malformed event: result of shop/west/w1 from us-west does not match subject detour.probe.us-west._edge.p1"},
		{name: "an endpoints' batch subject", subject: events.ProbeBatchSubject("us-west", "p1"),
			data: batch(edge("us-west", "shop", "edge-west")), want: "decode edge check: malformed event: subject detour.probe.us-west._endpoints._batch.p1"},
		{name: "not a probe event", subject: batched, data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-west"}),
			want: "decode edge check: malformed event: detour.edge.heartbeat.v1 is not a probe event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			region, rs, err := decodeEdgeChecks(tt.subject, tt.data)
			if strings.HasPrefix(tt.want, "decode") {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v\nwant %s", err, tt.want)
				}
				if !errors.Is(err, events.ErrMalformed) {
					t.Error("err does not wrap ErrMalformed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Endpoint)
			}
			if region != "us-west" || strings.Join(got, " ") != tt.want {
				t.Errorf("decoded %s from %s, want %s from us-west", got, region, tt.want)
			}
		})
	}
}

func FuzzDecodeEdgeChecks(f *testing.F) {
	f.Add(events.EdgeProbeBatchSubject("us-west", "p1"), heartbeatMsg(f, events.TypeProbeBatchCompleted,
		events.ProbeBatch{Region: "us-west", Prober: "p1", Results: []events.ProbeResult{{App: "shop", Pool: events.EdgeProbePool, Endpoint: "e", Region: "us-west"}}}))
	f.Add("detour.probe.x.shop._edge.e", []byte(`{"type":"detour.probe.completed.v1","id":"1","time":"2026-01-01T00:00:00Z","data":{"app":"shop"}}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		region, rs, err := decodeEdgeChecks(subject, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode edge check: ") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		for _, r := range rs {
			if r.Region != region || r.Pool != events.EdgeProbePool || !strings.HasPrefix(subject, "detour.probe."+region+".") {
				t.Fatalf("accepted %+v on %s as a result from %s", r, subject, region)
			}
		}
	})
}

package events_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
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

// TestTheDecidersFilterTakesEveryEndpointResultAndNoEdgeListenerBatch stores one message of each
// kind in PROBES and reads it through consumers filtered on EndpointProbeSubjects (the decider's)
// and on ProbeBatchSubjects: the first takes every result published alone and the endpoints'
// batches but not the edge listeners' batches; the second only the endpoints' batches, even
// beside an app named like the batches' app token.
func TestTheDecidersFilterTakesEveryEndpointResultAndNoEdgeListenerBatch(t *testing.T) {
	srv := eventstest.Start(t)
	js, err := jetstream.New(srv.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subjects := []string{
		events.ProbeBatchSubject("us-west", "p1"),
		events.EdgeProbeBatchSubject("us-west", "p1"),
		events.ProbeSubject("us-west", "shop", "west", "w1"),
		events.ProbeSubject("us-west", "shop", events.EdgeProbePool, "edge-west"),
		events.ProbeSubject("us-east", "_endpoints", "west", "p1"),
	}
	for _, s := range subjects {
		if _, err := js.Publish(ctx, s, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	read := func(filter string) []string {
		t.Helper()
		c, err := js.OrderedConsumer(ctx, events.StreamProbes, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for len(got) < len(subjects) {
			m, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break // nothing more
			}
			got = append(got, m.Subject())
		}
		return got
	}
	for _, tt := range []struct {
		filter string
		want   []string
	}{
		{events.EndpointProbeSubjects, []string{subjects[0], subjects[2], subjects[3], subjects[4]}},
		{events.ProbeBatchSubjects, []string{subjects[0]}},
		{events.EdgeProbeBatchSubjects, []string{subjects[1]}},
	} {
		if got := read(tt.filter); !slices.Equal(got, tt.want) {
			t.Errorf("a consumer filtered on %s reads %q, want %q", tt.filter, got, tt.want)
		}
	}
}

package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// Recorded is one transition for AppendBatch: the payload to record on an endpoint's or pool's
// STATE subject.
type Recorded struct {
	Subject    string
	Transition events.Transition
}

// AppendBatch stores the transitions as one batch of index index, as the decider records a
// decision round, and returns the batch's stream sequence.
func AppendBatch(tb testing.TB, js *Server, index uint64, ts ...Recorded) uint64 {
	tb.Helper()
	b := events.StateBatch{Index: index}
	for _, r := range ts {
		typ := events.TypePoolDown
		kind, _ := events.StateAggregate(r.Subject)
		switch {
		case kind == "endpoint" && r.Transition.To == events.StatusUp:
			typ = events.TypeEndpointUp
		case kind == "endpoint" && r.Transition.To == events.StatusDrained:
			typ = events.TypeEndpointDrained
		case kind == "endpoint":
			typ = events.TypeEndpointDown
		case r.Transition.To == events.StatusUp:
			typ = events.TypePoolUp
		}
		e, err := events.New(typ, "decider-test", time.Now(), r.Transition)
		if err != nil {
			tb.Fatal(err)
		}
		b.Items = append(b.Items, events.ItemOf(r.Subject, 0, e))
	}
	e, err := events.New(events.TypeStateBatch, "decider-test", time.Now(), b)
	if err != nil {
		tb.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), js.JS, events.BatchSubject(index), e)
	if err != nil {
		tb.Fatalf("append batch %d: %v", index, err)
	}
	return ack.Sequence
}

// EndpointDown is the transition of an endpoint going down, for AppendBatch.
func EndpointDown(app, pool, endpoint string) Recorded {
	return Recorded{Subject: events.EndpointStateSubject(app, pool, endpoint), Transition: events.Transition{
		App: app, Pool: pool, Endpoint: endpoint, From: events.StatusUp, To: events.StatusDown, Reason: "3 consecutive failures"}}
}

// EndpointUp is the transition of an endpoint coming back up, for AppendBatch.
func EndpointUp(app, pool, endpoint string) Recorded {
	return Recorded{Subject: events.EndpointStateSubject(app, pool, endpoint), Transition: events.Transition{
		App: app, Pool: pool, Endpoint: endpoint, From: events.StatusDown, To: events.StatusUp, Reason: "2 consecutive successes"}}
}

// PoolDown is the transition of a pool going down, for AppendBatch.
func PoolDown(app, pool string) Recorded {
	return Recorded{Subject: events.PoolStateSubject(app, pool), Transition: events.Transition{
		App: app, Pool: pool, From: events.StatusUp, To: events.StatusDown, Reason: "no endpoint up"}}
}

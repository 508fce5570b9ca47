package events_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

var at = time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)

func transitionEvent(t testing.TB, typ string, tr events.Transition, cause string) events.Envelope {
	t.Helper()
	e, err := events.Derived(typ, "decider-1", cause, tr.App+tr.Pool+tr.Endpoint, at, tr)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func envelopeOf(t testing.TB, typ string, payload any) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "decider-1", at, payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEveryItemOfABatchIsReadAsTheEventItStandsForAtTheBatchsSequence(t *testing.T) {
	ep := transitionEvent(t, events.TypeEndpointDown, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		From: events.StatusUp, To: events.StatusDown, Reason: "3 consecutive failures", Results: []string{"r1", "r2", "r3"}}, "r3")
	pool := transitionEvent(t, events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown}, ep.ID)
	epSubject, poolSubject := events.EndpointStateSubject("shop", "west", "w1"), events.PoolStateSubject("shop", "west")
	b := envelopeOf(t, events.TypeStateBatch, events.StateBatch{Index: 65, Items: []events.Item{
		events.ItemOf(epSubject, 0, ep), events.ItemOf(poolSubject, 0, pool)}})
	facts, err := events.Facts(events.BatchSubject(65), 812, b)
	if err != nil {
		t.Fatal(err)
	}
	if events.BatchSubject(65) != "detour.state.batch.1" {
		t.Errorf("batch 65 goes on %s, want slot 1 of 64", events.BatchSubject(65))
	}
	if len(facts) != 2 {
		t.Fatalf("got %d facts, want 2", len(facts))
	}
	for i, want := range []struct {
		subject string
		e       events.Envelope
	}{{epSubject, ep}, {poolSubject, pool}} {
		f := facts[i]
		if f.Subject != want.subject || f.Seq != 812 || f.Restated || string(f.Env.Encode()) != string(want.e.Encode()) {
			t.Errorf("fact %d: %s at %d restated=%v %s, want %s at 812 as %s", i, f.Subject, f.Seq, f.Restated, f.Env.Encode(), want.subject, want.e.Encode())
		}
	}
	lone, err := events.Facts(epSubject, 7, ep)
	if err != nil || len(lone) != 1 || lone[0].Subject != epSubject || lone[0].Seq != 7 || lone[0].Env.ID != ep.ID {
		t.Errorf("a lone event: %+v, %v; want itself on its subject", lone, err)
	}
}

func TestACheckpointRestatesEachItemAtTheSequenceItWasRecordedAt(t *testing.T) {
	ep := transitionEvent(t, events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusUp}, "r1")
	ep.Source = "decider-2"
	subject := events.EndpointStateSubject("shop", "west", "w1")
	c := envelopeOf(t, events.TypeStateCheckpoint, events.StateCheckpoint{Index: 40, Upto: 900, Part: 2, Parts: 3,
		Items: []events.Item{events.ItemOf(subject, 455, ep)}})
	facts, err := events.Facts(events.CheckpointSubject(2), 903, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(facts) != 1 || facts[0].Subject != subject || facts[0].Seq != 455 || !facts[0].Restated || facts[0].Env.Source != "decider-2" {
		t.Fatalf("facts %+v, want %s restated at 455 from decider-2", facts, subject)
	}
}

func TestABatchOrCheckpointThatIsNotValidAsAWholeYieldsNoFact(t *testing.T) {
	ok := transitionEvent(t, events.TypeEndpointDown, events.Transition{App: "a", Pool: "p", Endpoint: "e", To: events.StatusDown}, "c")
	item := func(subject string, f func(*events.Item)) events.Item {
		it := events.ItemOf(subject, 0, ok)
		if f != nil {
			f(&it)
		}
		return it
	}
	ep := events.EndpointStateSubject("a", "p", "e")
	for _, c := range []struct {
		name, subject string
		seq           uint64
		e             events.Envelope
		want          string
	}{
		{"a batch on another slot than its index's", events.BatchSubject(2), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Index: 1, Items: []events.Item{item(ep, nil)}}),
			"detour.state.batch.v1 index: 1 belongs on detour.state.batch.1, not detour.state.batch.2"},
		{"an empty batch", events.BatchSubject(0), 9, envelopeOf(t, events.TypeStateBatch, events.StateBatch{}),
			"detour.state.batch.v1 items: empty"},
		{"a subject twice", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, nil), item(ep, nil)}}),
			"detour.state.batch.v1 items[1].subject: detour.state.endpoint.a.p.e appears twice"},
		{"an override in a batch", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(events.OverrideSubject("a", "p", ""), nil)}}),
			`detour.state.batch.v1 items[0].subject: "detour.state.override.a.p._pool" is no endpoint or pool subject`},
		{"an edge transition in a batch", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(events.EdgeStateSubject("edge-west"), nil)}}),
			`detour.state.batch.v1 items[0].subject: "detour.state.edge.edge-west" is no endpoint or pool subject`},
		{"a pool type on an endpoint", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, func(it *events.Item) { it.Type = events.TypePoolDown })}}),
			`detour.state.batch.v1 items[0].type: "detour.pool.down.v1" does not belong on endpoint subjects`},
		{"an item without id", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, func(it *events.Item) { it.ID = "" })}}),
			"detour.state.batch.v1 items[0].id: missing"},
		{"an item without time", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, func(it *events.Item) { it.Time = time.Time{} })}}),
			"detour.state.batch.v1 items[0].time: missing"},
		{"an item whose data is no transition", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, func(it *events.Item) { it.Data = json.RawMessage(`[1]`) })}}),
			"detour.state.batch.v1 items[0].data: json: cannot unmarshal array into Go value of type events.Transition"},
		{"a batch item with a sequence of its own", events.BatchSubject(0), 9,
			envelopeOf(t, events.TypeStateBatch, events.StateBatch{Items: []events.Item{item(ep, func(it *events.Item) { it.Seq = 3 })}}),
			"detour.state.batch.v1 items[0].seq: a batch's items are recorded at the batch's sequence, got 3"},
		{"a checkpoint item recorded after the checkpoint's batch", events.CheckpointSubject(0), 20,
			envelopeOf(t, events.TypeStateCheckpoint, events.StateCheckpoint{Upto: 10, Parts: 1, Items: []events.Item{item(ep, func(it *events.Item) { it.Seq = 11 })}}),
			"detour.state.checkpoint.v1 items[0].seq: want 1 to 10, got 11"},
		{"a checkpoint part beyond its parts", events.CheckpointSubject(2), 20,
			envelopeOf(t, events.TypeStateCheckpoint, events.StateCheckpoint{Upto: 10, Part: 2, Parts: 2}),
			"detour.state.checkpoint.v1 part: want 0 to 1, got 2"},
		{"a checkpoint part on another part's subject", events.CheckpointSubject(1), 20,
			envelopeOf(t, events.TypeStateCheckpoint, events.StateCheckpoint{Upto: 10, Part: 0, Parts: 2}),
			"detour.state.checkpoint.v1 part: 0 belongs on detour.state.checkpoint.0, not detour.state.checkpoint.1"},
		{"a checkpoint complete up to after itself", events.CheckpointSubject(0), 10,
			envelopeOf(t, events.TypeStateCheckpoint, events.StateCheckpoint{Upto: 10, Parts: 1}),
			"detour.state.checkpoint.v1 upto: 10 is not before the checkpoint's own sequence 10"},
	} {
		facts, err := events.Facts(c.subject, c.seq, c.e)
		if err == nil || len(facts) != 0 {
			t.Errorf("%s: %d facts, err %v; want none and an error", c.name, len(facts), err)
			continue
		}
		if got := strings.TrimPrefix(err.Error(), events.ErrMalformed.Error()+": "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// FuzzFactsOfBatchesAndCheckpoints feeds Facts whatever a client could store on a batch or
// checkpoint subject: it never panics, and what it accepts names each endpoint or pool subject
// once, each fact of a type that belongs there.
func FuzzFactsOfBatchesAndCheckpoints(f *testing.F) {
	f.Add("detour.state.batch.1", uint64(9), []byte(`{"type":"detour.state.batch.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"d","data":{"index":65,"items":[{"subject":"detour.state.endpoint.a.p.e","type":"detour.endpoint.down.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{"app":"a","pool":"p","endpoint":"e","from":"up","to":"down","reason":"r"}},{"subject":"detour.state.pool.a.p","type":"detour.pool.down.v1","id":"j","time":"2026-01-01T00:00:00Z","data":{}}]}}`))
	f.Add("detour.state.checkpoint.0", uint64(20), []byte(`{"type":"detour.state.checkpoint.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"d","data":{"index":3,"upto":10,"part":0,"parts":1,"items":[{"subject":"detour.state.pool.a.p","seq":4,"type":"detour.pool.up.v1","id":"j","time":"2026-01-01T00:00:00Z","source":"d2","data":{"to":"up"}}]}}`))
	f.Add("detour.state.endpoint.a.p.e", uint64(1), []byte(`{"type":"detour.endpoint.up.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}}`))
	f.Fuzz(func(t *testing.T, subject string, seq uint64, data []byte) {
		e, err := events.Decode(data)
		if err != nil {
			return
		}
		facts, err := events.Facts(subject, seq, e)
		if err != nil || !events.IsStateBatch(e.Type) {
			return
		}
		seen := map[string]bool{}
		for _, fact := range facts {
			kind, _ := events.StateAggregate(fact.Subject)
			if (kind != "endpoint" && kind != "pool") || seen[fact.Subject] || !events.TypeBelongs(kind, fact.Env.Type) {
				t.Fatalf("accepted %s of type %s (twice: %v)", fact.Subject, fact.Env.Type, seen[fact.Subject])
			}
			seen[fact.Subject] = true
			if fact.Restated != (e.Type == events.TypeStateCheckpoint) || (!fact.Restated && fact.Seq != seq) {
				t.Fatalf("fact of %s at %d restated=%v from a %s at %d", fact.Subject, fact.Seq, fact.Restated, e.Type, seq)
			}
		}
	})
}

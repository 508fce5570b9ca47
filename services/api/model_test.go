package api

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// An API started on a STATE that holds many more transitions than it keeps folds each of those
// past the kept ones as fast as each before them: it dropped the oldest of the kept ones by
// moving all the others, so each transition past the first 10,000 cost as much as moving
// 10,000, and an API started on a STATE of a million transitions showed old states for minutes.
func TestFoldingTransitionsPastThoseKeptCostsNoMoreThanTheFirst(t *testing.T) {
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
`)
	var envs [2]events.Envelope
	for i, to := range []events.Status{events.StatusUp, events.StatusDown} {
		typ := events.TypeEndpointUp
		if to == events.StatusDown {
			typ = events.TypeEndpointDown
		}
		e, err := events.New(typ, "test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: to, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = e
	}
	subject := events.EndpointStateSubject("shop", "west", "w1")
	m := newModel(cfg, 1)
	seq := uint64(0)
	fold := func(n int) time.Duration {
		start := time.Now()
		for range n {
			seq++
			if !m.apply(subject, seq, envs[seq%2]) {
				t.Fatalf("transition %d not folded", seq)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	first := fold(keepTransitions)
	past := fold(4 * keepTransitions)
	if past > 10*first {
		t.Errorf("a transition past the %d kept took %v to fold, one of the first %v: want about as long", keepTransitions, past, first)
	}
	got := m.transitions(filter{}, 0, 2*keepTransitions)
	if len(got) != keepTransitions || got[0].Seq != seq || got[len(got)-1].Seq != seq-keepTransitions+1 {
		t.Errorf("after %d transitions: %d kept, from %d to %d; want the last %d, %d to %d", seq, len(got), got[len(got)-1].Seq, got[0].Seq,
			keepTransitions, seq-keepTransitions+1, seq)
	}
}

package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// folding is a model of one app and the two transitions of its endpoint, up and down, to fold in
// turn: fold(n) folds the next n, numbered 1, 2, … as STATE would.
type folding struct {
	m    *model
	seq  uint64
	fold func(n int)
}

func newFolding(tb testing.TB) *folding {
	cfg := eventstest.Config(tb, `
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
			tb.Fatal(err)
		}
		envs[i] = e
	}
	subject := events.EndpointStateSubject("shop", "west", "w1")
	f := &folding{m: newModel(cfg, 1)}
	f.fold = func(n int) {
		for range n {
			f.seq++
			if !f.m.apply(subject, f.seq, envs[f.seq%2]) {
				tb.Fatalf("transition %d not folded", f.seq)
			}
		}
	}
	return f
}

// An API started on a STATE that holds many more transitions than it keeps folds each of those
// past the kept ones without moving the kept ones: it dropped the oldest of them by moving all
// the others, so each transition past the first 10,000 cost as much as moving 10,000, and an API
// started on a STATE of a million transitions showed old states for minutes. The kept ones are
// moved once per keepTransitions folded (at most one move a transition), and what is shown is
// still the last keepTransitions, at each drop too.
func TestFoldingTransitionsPastThoseKeptMovesThemOncePerKeepTransitions(t *testing.T) {
	f := newFolding(t)
	f.fold(keepTransitions)
	// moved counts the transitions moved: all those held, whenever a fold did not just add one.
	moved, folded := 0, 3*keepTransitions
	for range folded {
		held := len(f.m.history)
		f.fold(1)
		if len(f.m.history) != held+1 {
			moved += len(f.m.history)
		}
	}
	if moved > folded {
		t.Errorf("folding %d transitions past the %d kept moved %d of them: want at most one a transition", folded, keepTransitions, moved)
	}
}

// What /v1/transitions shows is the last keepTransitions folded, whether the oldest were just
// dropped or not, and a page's next (before its last sequence) goes on where it ended across a
// drop: nothing lost, nothing repeated.
func TestTheTransitionsShownAreTheLastKeptAcrossEachDrop(t *testing.T) {
	f := newFolding(t)
	shown := func() {
		t.Helper()
		got := f.m.transitions(filter{}, 0, 2*keepTransitions)
		want := min(int(f.seq), keepTransitions)
		if len(got) != want || got[0].Seq != f.seq || got[len(got)-1].Seq != f.seq-uint64(want)+1 {
			t.Fatalf("after %d transitions: %d shown, from %d to %d; want the last %d, %d to %d", f.seq, len(got),
				got[len(got)-1].Seq, got[0].Seq, want, f.seq-uint64(want)+1, f.seq)
		}
	}
	for _, n := range []int{keepTransitions - 1, 1, 1, keepTransitions - 3, 1, 1, 1, keepTransitions - 2, 1, 1} {
		f.fold(n)
		shown()
	}
	f.fold(2*keepTransitions - 1 - len(f.m.history)) // the next fold drops the oldest
	page := f.m.transitions(filter{}, 0, 1000)
	f.fold(1)
	next := f.m.transitions(filter{}, page[len(page)-1].Seq, 1000)
	if len(next) != 1000 || next[0].Seq != page[len(page)-1].Seq-1 || next[999].Seq != page[0].Seq-1999 {
		t.Errorf("the page after %d..%d, read across a drop: %d transitions, %d..%d; want 1000, %d..%d", page[0].Seq, page[len(page)-1].Seq,
			len(next), next[0].Seq, next[len(next)-1].Seq, page[len(page)-1].Seq-1, page[0].Seq-1999)
	}
	shown()
}

// BenchmarkFoldingATransitionPastThoseKept measures a fold once keepTransitions are held, what an
// API started on a long STATE does for every transition past them.
func BenchmarkFoldingATransitionPastThoseKept(b *testing.B) {
	f := newFolding(b)
	f.fold(keepTransitions)
	for b.Loop() {
		f.fold(1)
	}
}

// TestADrillsPoolDownIsShownAsTheDrills: a drill fails w1 and takes west down. GET
// /v1/transitions (and the status page) show both transitions with the drill: the pool's
// reason ("w1 down: 0 of 1 endpoints serving, need 1") reads as an outage's, and the pool's
// down was shown as one, where alerts told it as the drill's.
func TestADrillsPoolDownIsShownAsTheDrills(t *testing.T) {
	f := newFolding(t)
	down := func(subject, typ string, tr events.Transition) {
		t.Helper()
		e, err := events.New(typ, "test", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		f.seq++
		if !f.m.apply(subject, f.seq, e) {
			t.Fatalf("%s not folded", typ)
		}
	}
	down(events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointDown, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		From: events.StatusUp, To: events.StatusDown, Reason: "drill d1: simulated failure of pool shop/west", Drill: "d1"})
	down(events.PoolStateSubject("shop", "west"), events.TypePoolDown, events.Transition{App: "shop", Pool: "west",
		From: events.StatusUp, To: events.StatusDown, Reason: "w1 down: 0 of 1 endpoints serving, need 1", Drill: "d1"})
	for _, kind := range []string{"endpoint", "pool"} {
		got := f.m.transitions(filter{kind: kind}, 0, 1)
		body, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), `"drill":"d1"`) {
			t.Errorf("GET /v1/transitions?kind=%s shows %s: want the drill d1", kind, body)
		}
	}
}

package decider

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// TestAnOverrideWaitsForTheResultsHeardBeforeItNoLongerThanTheirGrace: w1 is forced down, passes
// (rise 1), and the operator clears the override, while this replica is behind in PROBES (a
// storm of results: the loop has PROBES deliveries waiting at every tick) and PROBES has not
// delivered the pass heard on the wire before STATE delivered the clear. The clear waits for it
// at most the grace a result heard on the wire waits for PROBES, then the pass is folded as heard
// and the clear after it, as detour replay orders them: w1 comes up by the clear, its votes
// counting the pass. The clear waited for as long as the storm kept the replica behind; held no
// longer than the grace but applied ahead of the pass, w1 came up by the pass instead.
func TestAnOverrideWaitsForTheResultsHeardBeforeItNoLongerThanTheirGrace(t *testing.T) {
	cfg := w1Config(t, "")
	local := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	o := Options{Config: cfg, Name: "decider/a", Now: func() time.Time { return local }, Stats: &Stats{}}
	d := handDriven(o, nil)
	ctx := context.Background()
	w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
	subject := events.OverrideSubject("shop", "west", "w1")
	override := func(seq uint64, typ, action string) events.Envelope {
		t.Helper()
		env, err := events.New(typ, "alice@box", local, events.Override{App: "shop", Pool: "west", Endpoint: "w1",
			By: "alice@box", Reason: "region outage", Action: action})
		if err != nil {
			t.Fatal(err)
		}
		d.onState(ctx, delivery{subject: subject, seq: seq, stamp: local, env: env})
		return env
	}
	override(1, events.TypeOverrideSet, events.ActionForceDown)
	if w1.st.Own == nil {
		t.Fatal("the override was held with nothing heard before it")
	}
	d.queued, d.queuedSlots = nil, nil // as appended

	pass := w1Pass(t, "eu-1", local)
	d.heard(heardMsg{key: msgKey{events.ProbeSubject("eu", "shop", "west", "w1"), pass.ID}, data: pass.Encode(), at: local})
	clear := override(2, events.TypeOverrideCleared, "")
	if w1.st.Own == nil {
		t.Fatal("the clear was applied before the pass heard ahead of it was folded")
	}
	for _, after := range []time.Duration{100 * time.Millisecond, wireGrace, 5 * time.Second} {
		d.onTick(ctx, local.Add(after), 1)
		if applied := w1.st.Own == nil; applied != (after >= wireGrace) {
			t.Errorf("%s after STATE delivered it, with PROBES deliveries waiting: clear applied %t, want %t", after, applied, after >= wireGrace)
		}
	}
	if len(d.queued) != 1 || d.queued[0].dec.To != events.StatusUp || d.queued[0].dec.Cause != clear.ID {
		t.Errorf("decisions %+v, want w1 up caused by the clear %s", d.queued, clear.ID)
	}
}

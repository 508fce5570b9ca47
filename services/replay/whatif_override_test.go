package replay

import (
	"reflect"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

func TestWhatIfHonoursAnOverrideAsTheDeciderDoesForItsSubjectAndOnlyWithAKnownAction(t *testing.T) {
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.12:8081"}]
`)
	s, err := ParseSettings("fall=3")
	if err != nil {
		t.Fatal(err)
	}
	w := NewWhatIf(cfg, s, time.Time{}, time.Time{})
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	seq := uint64(0)
	for i := range 2 {
		for _, ep := range []string{"w1", "w2"} {
			seq++
			w.Add(&Record{Stream: events.StreamProbes, Seq: seq, Subject: events.ProbeSubject("eu", "shop", "west", ep), Stored: at,
				Results: []events.ProbeResult{{ID: ep + "-" + string(rune('a'+i)), App: "shop", Pool: "west", Endpoint: ep, Region: "eu", OK: true}}})
			at = at.Add(time.Second)
		}
	}
	override := func(endpoint string, o events.Override) {
		t.Helper()
		e, err := events.New(events.TypeOverrideSet, "override/"+o.By, at, o)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		w.Add(&Record{Stream: events.StreamState, Seq: seq, Subject: events.OverrideSubject("shop", "west", endpoint), Stored: at, Env: e})
		at = at.Add(time.Second)
	}
	// On w1's subject, a payload naming the whole pool: the decider drains w1 alone.
	override("w1", events.Override{App: "shop", Pool: "west", Action: events.ActionDrain, By: "mallory", Reason: "forged"})
	// An action the decider does not know: it skips the override.
	override("w2", events.Override{App: "shop", Pool: "west", Endpoint: "w2", Action: "weight", By: "mallory", Reason: "newer"})

	got := map[string][]events.Status{}
	for _, p := range w.Compare(at).Pairs {
		if p.WhatIf != nil {
			got[p.Endpoint] = append(got[p.Endpoint], p.WhatIf.To)
		}
	}
	want := map[string][]events.Status{"w1": {events.StatusUp, events.StatusDrained}, "w2": {events.StatusUp}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("what-if transitions %v, want %v", got, want)
	}
}

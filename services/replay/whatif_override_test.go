package replay

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

func TestWhatIfHonoursAnOverrideAsTheDeciderDoesForItsSubjectAndOnlyWithAKnownAction(t *testing.T) {
	w := fall3WhatIf(t)
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

func TestWhatIfLetsTimePassBetweenResultsAsTheDecidersTicksDo(t *testing.T) {
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 4s}
    hold_down: 3s
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`)
	s, err := ParseSettings("fall=3")
	if err != nil {
		t.Fatal(err)
	}
	w := NewWhatIf(cfg, s, time.Time{}, time.Time{})
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// Down at 2s, healthy from 4s; the region falls silent, so the hold-down ends (7s) before it
	// goes stale (after 8s); it reports again at 20s.
	for i, at := range []int{0, 1, 2, 3, 4, 20} {
		w.Add(&Record{Stream: events.StreamProbes, Seq: uint64(i + 1), Subject: events.ProbeSubject("eu", "shop", "west", "w1"),
			Stored:  t0.Add(time.Duration(at) * time.Second),
			Results: []events.ProbeResult{{ID: string(rune('a' + i)), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", OK: i >= 3}}})
	}
	var got []string
	for _, p := range w.Compare(t0.Add(21 * time.Second)).Pairs {
		if p.WhatIf != nil {
			got = append(got, string(p.WhatIf.To)+" at "+p.WhatIf.At.Sub(t0).String())
		}
	}
	if want := []string{"down at 2s", "up at 7s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("what-if transitions %q, want %q (as a decider ticking through them)", got, want)
	}
}

func TestWhatIfDecidesEachStretchWithTheConfigurationVersionActiveThen(t *testing.T) {
	v1 := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 1, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`
	v2 := strings.Replace(v1, "fall: 3", "fall: 5", 1)
	s, err := ParseSettings("quorum=0.5")
	if err != nil {
		t.Fatal(err)
	}
	// Replayed today, with version 2 the active one: fall 5 from the start would take w1 down at
	// 5s; version 1, active until 3.5s, took it down at 3s, as STATE recorded.
	w := NewWhatIf(eventstest.Config(t, v2), s, time.Time{}, time.Time{})
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	seq := uint64(0)
	add := func(r *Record) {
		seq++
		r.Seq = seq
		w.Add(r)
	}
	version := func(doc string, at time.Time) {
		e, err := events.New(events.TypeConfigApplied, "alice@box", at, events.ConfigApplied{Document: doc, By: "alice@box"})
		if err != nil {
			t.Fatal(err)
		}
		add(&Record{Stream: events.StreamConfig, Subject: events.SubjectConfigDoc, Stored: at, Env: e})
	}
	version(v1, t0.Add(-time.Hour))
	for i := range 7 {
		at := t0.Add(time.Duration(i) * time.Second)
		if i == 4 {
			version(v2, at.Add(-500*time.Millisecond))
		}
		add(&Record{Stream: events.StreamProbes, Subject: events.ProbeSubject("eu", "shop", "west", "w1"), Stored: at,
			Results: []events.ProbeResult{{ID: fmt.Sprintf("eu-%d", i), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", OK: i == 0}}})
		if i == 0 || i == 3 {
			e, err := events.Derived(map[bool]string{true: events.TypeEndpointUp, false: events.TypeEndpointDown}[i == 0], "d1",
				fmt.Sprintf("eu-%d", i), "k", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: map[bool]events.Status{true: events.StatusUp, false: events.StatusDown}[i == 0]})
			if err != nil {
				t.Fatal(err)
			}
			add(&Record{Stream: events.StreamState, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: at, Env: e})
		}
	}
	var got []string
	for _, p := range w.Compare(t0.Add(10 * time.Second)).Pairs {
		got = append(got, p.To+" "+p.Verdict())
		if p.WhatIf != nil {
			got[len(got)-1] += " at " + p.WhatIf.At.Sub(t0).String()
		}
	}
	if want := []string{"up same at 0s", "down same at 3s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("what-if %q, want %q", got, want)
	}
}

func TestWhatIfMovesTheFailoverAndTheRecoveryAsFallAndRiseSay(t *testing.T) {
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`)
	// One result a second: passing at 0–1s, failing at 2–9s, passing from 10s. Recorded with
	// fall 3 and rise 2: up at 1s, down at 4s (the third failure), up at 11s (the second pass).
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	run := func(settings string) []string {
		s, err := ParseSettings(settings)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWhatIf(cfg, s, time.Time{}, time.Time{})
		seq := uint64(0)
		for i := range 14 {
			at := t0.Add(time.Duration(i) * time.Second)
			seq++
			w.Add(&Record{Stream: events.StreamProbes, Seq: seq, Subject: events.ProbeSubject("eu", "shop", "west", "w1"), Stored: at,
				Results: []events.ProbeResult{{ID: fmt.Sprintf("eu-%d", i), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", OK: i < 2 || i >= 10}}})
			for _, rec := range []struct {
				at int
				to events.Status
			}{{1, events.StatusUp}, {4, events.StatusDown}, {11, events.StatusUp}} {
				if rec.at != i {
					continue
				}
				e, err := events.Derived(map[events.Status]string{events.StatusUp: events.TypeEndpointUp, events.StatusDown: events.TypeEndpointDown}[rec.to],
					"d1", fmt.Sprintf("eu-%d", i), "k", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: rec.to})
				if err != nil {
					t.Fatal(err)
				}
				seq++
				w.Add(&Record{Stream: events.StreamState, Seq: seq, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: at, Env: e})
			}
		}
		var got []string
		for _, p := range w.Compare(t0.Add(20 * time.Second)).Pairs {
			got = append(got, fmt.Sprintf("%s %s %s", p.To, p.Verdict(), p.Shift.D()))
		}
		return got
	}
	for _, tc := range []struct {
		settings string
		want     []string
	}{
		{"fall=3,rise=2", []string{"up same 0s", "down same 0s", "up same 0s"}},
		// fall 5: the fifth failure, at 6s; rise 4: the fourth pass, at 13s (and at 3s at the start).
		{"fall=5,rise=4", []string{"up gone 0s", "down later 2s", "up later 2s"}},
		// fall 1: the first failure, at 2s; rise 1: the first pass, at 0s and 10s.
		{"fall=1,rise=1", []string{"up earlier -1s", "down earlier -2s", "up earlier -1s"}},
	} {
		if got := run(tc.settings); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("what-if %s: %q, want %q", tc.settings, got, tc.want)
		}
	}
}

func TestWhatIfDecidesAnOverrideOnAnEndpointNotProbedYetAsTheLiveDeciderDoes(t *testing.T) {
	w := fall3WhatIf(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// w2 is being probed; w1 has had no result yet when an operator forces it up, which the
	// live decider recorded as w1's first transition.
	w.Add(&Record{Stream: events.StreamProbes, Seq: 1, Subject: events.ProbeSubject("eu", "shop", "west", "w2"), Stored: t0,
		Results: []events.ProbeResult{{ID: "eu-1", App: "shop", Pool: "west", Endpoint: "w2", Region: "eu", OK: true}}})
	o, err := events.New(events.TypeOverrideSet, "override/alice", t0.Add(time.Second),
		events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionForceUp, By: "alice@box", Reason: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(&Record{Stream: events.StreamState, Seq: 2, Subject: events.OverrideSubject("shop", "west", "w1"), Stored: t0.Add(time.Second), Env: o})
	up, err := events.Derived(events.TypeEndpointUp, "d1", o.ID, "k", t0.Add(time.Second),
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusUp, Reason: "override force_up by alice@box: deploy"})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(&Record{Stream: events.StreamState, Seq: 3, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: t0.Add(time.Second), Env: up})
	var got []string
	for _, p := range w.Compare(t0.Add(2 * time.Second)).Pairs {
		got = append(got, p.Endpoint+" "+p.To+" "+p.Verdict())
	}
	if want := []string{"w1 up same"}; !reflect.DeepEqual(got, want) {
		t.Errorf("what-if %q, want %q", got, want)
	}
}

// fall3WhatIf is a what-if with fall=3 over app shop, pool west, endpoints w1 and w2, checked
// every second, whose configuration has fall 3 and rise 2.
func fall3WhatIf(t *testing.T) *WhatIf {
	t.Helper()
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
	return NewWhatIf(cfg, s, time.Time{}, time.Time{})
}

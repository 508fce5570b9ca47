package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// flapYAML is the configuration these tests and the differential runs (differential_test.go)
// start from: three endpoints probed by three regions every 40ms, with staleness and hold-down short enough to happen many times.
const flapYAML = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 40ms, timeout: 20ms, fall: 2, rise: 2, stale_after: 130ms}
    hold_down: 90ms
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.12:8081"}]
      - name: east
        endpoints: [{name: e1, address: "127.0.0.13:8081"}]
`

// downs runs a decider with fall 1 and has region a fail once on each endpoint named, and returns
// the streams, the configuration and the transition that took the last one down.
func downs(t *testing.T, endpoints ...[2]string) (*eventstest.Server, *config.Config, events.Envelope) {
	t.Helper()
	srv := eventstest.Start(t)
	doc := strings.Replace(flapYAML, "fall: 2, rise: 2", "fall: 1, rise: 1", 1)
	cfg, err := config.Publish(context.Background(), srv.JS, "shop.yaml", []byte(doc), "test")
	if err != nil {
		t.Fatal(err)
	}
	o := decider.Options{JS: srv.JS, Config: cfg, Name: "d1", Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
	eventstest.Run(t, "decider", func(ctx context.Context) error { return decider.Run(ctx, o) })
	eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "the decider did not go live")
	var down events.Envelope
	for i, ep := range endpoints {
		r := events.ProbeResult{ID: fmt.Sprintf("a-%d", i), At: time.Now(), App: "shop", Pool: ep[0], Endpoint: ep[1], Region: "a", Prober: "p", Check: "http"}
		e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), srv.JS, events.ProbeSubject("a", "shop", ep[0], ep[1]), e); err != nil {
			t.Fatal(err)
		}
		eventstest.Eventually(t, 5*time.Second, func() bool {
			st, err := srv.JS.Stream(context.Background(), events.StreamState)
			if err != nil {
				return false
			}
			down, _, _, err = events.Last(context.Background(), st, events.EndpointStateSubject("shop", ep[0], ep[1]))
			return err == nil && down.Type == events.TypeEndpointDown
		}, "%s to go down", ep[1])
	}
	return srv, cfg, down
}

// whatIf runs `detour replay --what-if fall=1` as o says and returns its text.
func whatIf(t *testing.T, srv *eventstest.Server, cfg *config.Config, o replay.Options) string {
	t.Helper()
	s, err := replay.ParseSettings("fall=1")
	if err != nil {
		t.Fatal(err)
	}
	o.Config, o.WhatIf = cfg, &s
	var out bytes.Buffer
	if err := replay.Run(context.Background(), srv.JS, o, &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestAWindowEndingAtATransitionsTimeShowsIt: a user copies the time of a transition from the
// timeline into --to. STATE stored the transition a moment after its time (the time of the
// result that completed it): the window still holds it, and the what-if with the live
// thresholds says it is the same, not one that "would happen only with the what-if settings".
func TestAWindowEndingAtATransitionsTimeShowsIt(t *testing.T) {
	srv, cfg, down := downs(t, [2]string{"west", "w1"})
	out := whatIf(t, srv, cfg, replay.Options{Filter: replay.Filter{To: down.Time}})
	if !strings.Contains(out, "unknown → down: a: 1 consecutive failures (fall 1)") || !strings.Contains(out, "1 same, 0 earlier, 0 later, 0 would not happen, 0 new") {
		t.Errorf("replay --to %s (w1's down) does not show it, or not as the same:\n%s", down.Time.Format(time.RFC3339Nano), out)
	}
}

// TestAWhatIfKeepsTheEndpointsTheFiltersSelect: --app and --endpoint select what is shown, the
// what-if's comparison included.
func TestAWhatIfKeepsTheEndpointsTheFiltersSelect(t *testing.T) {
	srv, cfg, _ := downs(t, [2]string{"west", "w1"}, [2]string{"east", "e1"})
	for _, f := range []replay.Filter{{Endpoint: "w1"}, {App: "shop", Endpoint: "w1"}} {
		out := whatIf(t, srv, cfg, replay.Options{Filter: f})
		if !strings.Contains(out, "shop/west/w1") || strings.Contains(out, "shop/east/e1") || !strings.Contains(out, "1 same, 0 earlier") {
			t.Errorf("replay --app %q --endpoint %q shows another endpoint, or not w1:\n%s", f.App, f.Endpoint, out)
		}
	}
	if out := whatIf(t, srv, cfg, replay.Options{Filter: replay.Filter{App: "blog"}}); strings.Contains(out, "shop/") {
		t.Errorf("replay --app blog shows shop:\n%s", out)
	}
}

// TestAWindowOpeningDuringAHoldDownReplaysItWhole: a window that opens while an endpoint is held
// down (healthy again for less than hold_down) re-decides its recovery when it was recorded: the
// warm-up read before the window reaches back to when the hold-down began.
func TestAWindowOpeningDuringAHoldDownReplaysItWhole(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	doc := strings.Replace(flapYAML, "interval: 40ms, timeout: 20ms, fall: 2, rise: 2, stale_after: 130ms", "interval: 50ms, timeout: 20ms, fall: 1, rise: 1, stale_after: 150ms", 1)
	doc = strings.Replace(doc, "hold_down: 90ms", "hold_down: 400ms", 1)
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(doc), "test")
	if err != nil {
		t.Fatal(err)
	}
	o := decider.Options{JS: srv.JS, Config: cfg, Name: "d1", Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
	eventstest.Run(t, "decider", func(ctx context.Context) error { return decider.Run(ctx, o) })
	eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "the decider did not go live")
	var healthy time.Time
	for i := range 16 {
		r := events.ProbeResult{ID: fmt.Sprintf("a-%d", i), At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "a", Prober: "p", Check: "http", OK: i > 0}
		e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(ctx, srv.JS, events.ProbeSubject("a", "shop", "west", "w1"), e)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			probes, err := srv.JS.Stream(ctx, events.StreamProbes)
			if err != nil {
				t.Fatal(err)
			}
			m, err := probes.GetMsg(ctx, ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			healthy = m.Time
		}
		time.Sleep(50 * time.Millisecond) // the check interval passes: the incident is made of time
	}
	var up events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool {
		st, err := srv.JS.Stream(ctx, events.StreamState)
		if err != nil {
			return false
		}
		up, _, _, err = events.Last(ctx, st, events.EndpointStateSubject("shop", "west", "w1"))
		return err == nil && up.Type == events.TypeEndpointUp
	}, "w1 to come back up")
	if want := healthy.Add(400 * time.Millisecond); !up.Time.Equal(want) {
		t.Fatalf("w1 recorded up at %s, want at the hold-down's end %s", up.Time, want)
	}
	// The window opens 300ms into the hold-down.
	out := whatIf(t, srv, cfg, replay.Options{Filter: replay.Filter{From: healthy.Add(300 * time.Millisecond), To: up.Time.Add(time.Second)}})
	if !strings.Contains(out, "1 same, 0 earlier, 0 later, 0 would not happen, 0 new") {
		t.Errorf("a window opening during w1's hold-down does not re-decide its recovery as recorded:\n%s", out)
	}
}

// TestAWindowOlderThanPROBESHoldsSaysSoAndCallsNoTransitionGone: PROBES discards its oldest
// results at its bounds (streams.probes' max_age or max_bytes). A user replaying an incident
// whose results are gone is told so, and the what-if does not call each transition of it one
// that "would not happen": it had no results to decide them from.
func TestAWindowOlderThanPROBESHoldsSaysSoAndCallsNoTransitionGone(t *testing.T) {
	srv, cfg, down := downs(t, [2]string{"west", "w1"})
	ctx := context.Background()
	// A later result, of an endpoint no configuration names, then a bound that keeps only it.
	r := events.ProbeResult{ID: "later", At: time.Now(), App: "shop", Pool: "west", Endpoint: "gone", Region: "a", Prober: "p", Check: "http", OK: true}
	e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, srv.JS, events.ProbeSubject("a", "shop", "west", "gone"), e); err != nil {
		t.Fatal(err)
	}
	probes, err := srv.JS.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	sc := probes.CachedInfo().Config
	sc.MaxMsgs = 1
	if _, err := srv.JS.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []replay.Filter{{}, {From: down.Time.Add(-time.Minute)}} {
		var warnings []string
		out := whatIf(t, srv, cfg, replay.Options{Filter: f, Warn: func(s string) { warnings = append(warnings, s) }})
		if !strings.Contains(out, "0 would not happen") {
			t.Errorf("replay --from %s: the what-if calls w1's down, whose results PROBES discarded, one that would not happen:\n%s", f.From, out)
		}
		if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "PROBES no longer holds what it stored before ") || !strings.Contains(warnings[0], "the what-if compares the transitions from ") {
			t.Errorf("replay --from %s: warnings %q, want one saying PROBES no longer holds the window's start, and from when the what-if compares", f.From, warnings)
		}
	}
}

// TestAWhatIfWhileResultsStillFlowInventsNoSilence: an incident still under way (region a sees
// w1 up, region b down: a tie, up) is replayed with the live thresholds while the probers keep
// sending results, with --to later than now or
// from an operator's machine whose clock runs ahead of the servers'. No region fell silent: the
// what-if finds what the decider recorded and adds no region going stale after the last result
// it read, when it only stopped reading.
func TestAWhatIfWhileResultsStillFlowInventsNoSilence(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	doc := strings.Replace(flapYAML, "fall: 2, rise: 2, stale_after: 130ms", "fall: 1, rise: 1, stale_after: 1s", 1)
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(doc), "test")
	if err != nil {
		t.Fatal(err)
	}
	o := decider.Options{JS: srv.JS, Config: cfg, Name: "d1", Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
	eventstest.Run(t, "decider", func(ctx context.Context) error { return decider.Run(ctx, o) })
	eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "the decider did not go live")
	eventstest.Run(t, "prober", func(ctx context.Context) error {
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			for _, region := range []string{"a", "b"} {
				r := events.ProbeResult{ID: fmt.Sprintf("%s-%d", region, i), At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: region, Prober: "p", Check: "http", OK: region == "a"}
				e, err := events.New(events.TypeProbeCompleted, "prober/"+region, r.At, r)
				if err != nil {
					return err
				}
				if _, err := events.Publish(ctx, srv.JS, events.ProbeSubject(region, "shop", "west", "w1"), e); err != nil && ctx.Err() == nil {
					return err
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		st, err := srv.JS.Stream(ctx, events.StreamState)
		if err != nil {
			return false
		}
		up, _, _, err := events.Last(ctx, st, events.EndpointStateSubject("shop", "west", "w1"))
		return err == nil && up.Type == events.TypeEndpointUp
	}, "w1 to come up")
	ahead := func() time.Time { return time.Now().Add(5 * time.Second) }
	for name, o := range map[string]replay.Options{
		"--to an hour from now":         {Filter: replay.Filter{To: time.Now().Add(time.Hour)}},
		"a clock 5s ahead the server's": {Now: ahead},
	} {
		if out := whatIf(t, srv, cfg, o); !strings.Contains(out, "1 same, 0 earlier, 0 later, 0 would not happen, 0 new") {
			t.Errorf("%s: the what-if with the live thresholds does not find w1's one recorded transition alone:\n%s", name, out)
		}
	}
}

// TestAReplayNamesTheEventsOfALaterVersionItSkipped: an operator's detour older than the
// deciders that wrote the history (a rolling upgrade) meets transitions of a type it does not
// know. It skips them, and says how many, instead of a timeline and a what-if that silently miss
// them (the what-if then calls what the later version recorded one that was never recorded).
func TestAReplayNamesTheEventsOfALaterVersionItSkipped(t *testing.T) {
	srv, cfg, _ := downs(t)
	ctx := context.Background()
	for _, typ := range []string{"detour.endpoint.down.v2", events.TypeHoldDownCancelled} {
		e, err := events.New(typ, "decider-9", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "v2"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
	}
	var warnings []string
	whatIf(t, srv, cfg, replay.Options{Warn: func(s string) { warnings = append(warnings, s) }})
	want := "skipped 1 event of a type this version of detour does not know"
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one beginning %q", warnings, want)
	}
}

// TestAWindowsWarmUpIsTheVersionActiveWhenItOpens: after an incident the team shortens the
// check's interval and stale_after. Replaying the incident from just before w1 went down, the
// what-if with the live quorum reads back the failures that began its streak as far as the
// version active then says (3 failures 1s apart), not as far as the version active today (30ms),
// and finds the down the decider recorded.
func TestAWindowsWarmUpIsTheVersionActiveWhenItOpens(t *testing.T) {
	w := newW1Streak(t)
	var last time.Time
	for i := range 3 {
		if i == 2 {
			time.Sleep(100 * time.Millisecond) // the streak is made of time: older than today's warm-up
		}
		last = w.fail(i)
	}
	w.recordDown(last)
	today := w.version("v2.yaml", "interval: 10ms, timeout: 5ms, fall: 3, rise: 1, stale_after: 20ms")
	if out := w.whatIf(today, last.Add(-time.Millisecond)); !strings.Contains(out, sameAsRecorded) {
		t.Errorf("a window opening just before w1's down does not re-decide it as recorded:\n%s", out)
	}
}

// TestAJSONReplaySaysOnStderrHowManyRecordsItCouldNotRead: the text and HTML timelines count
// the malformed records they skipped; the JSON one, one object per line for a program to read,
// has no such line, so the count is said on stderr.
func TestAJSONReplaySaysOnStderrHowManyRecordsItCouldNotRead(t *testing.T) {
	srv, _, _ := downs(t, [2]string{"west", "w1"})
	if _, err := srv.JS.Publish(context.Background(), events.EndpointStateSubject("shop", "west", "w2"), []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	var out bytes.Buffer
	if err := replay.Run(context.Background(), srv.JS, replay.Options{Format: "json", Warn: func(s string) { warnings = append(warnings, s) }}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "skipped 1 malformed record"; len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one beginning %q", warnings, want)
	}
}

// TestAWhatIfComparesTheHistoryUpToWhereItReadTheResults: the end of the history is fixed
// when the replay asks PROBES, and STATE is read a moment later: a transition the decider
// recorded in that moment, for a result stored after the end (here one dated after it), is not
// compared, where the what-if, which never read that result, called it one that would not happen.
func TestAWhatIfComparesTheHistoryUpToWhereItReadTheResults(t *testing.T) {
	srv, cfg, _ := downs(t, [2]string{"west", "w1"})
	later, err := events.New(events.TypeEndpointUp, "decider-1", time.Now().Add(time.Minute),
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusDown, To: events.StatusUp, Reason: "a: 1 consecutive successes (rise 1)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.EndpointStateSubject("shop", "west", "w1"), later); err != nil {
		t.Fatal(err)
	}
	if out := whatIf(t, srv, cfg, replay.Options{}); !strings.Contains(out, "1 same, 0 earlier, 0 later, 0 would not happen, 0 new") {
		t.Errorf("the what-if compares a transition recorded after the results it read:\n%s", out)
	}
}

// storeW1Down stores w1's down, dated at, and returns it.
func storeW1Down(t *testing.T, js jetstream.JetStream, at time.Time) events.Envelope {
	t.Helper()
	down, err := events.New(events.TypeEndpointDown, "decider-1", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "a: 1 consecutive failures (fall 1)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js, events.EndpointStateSubject("shop", "west", "w1"), down); err != nil {
		t.Fatal(err)
	}
	return down
}

// answerW1 stores the answer change (serial 7) down caused, dated at.
func answerW1(t *testing.T, js jetstream.JetStream, down events.Envelope, at time.Time) {
	t.Helper()
	answer, err := events.Derived(events.TypeZoneChanged, "dns-1", down.ID, "z", at,
		events.ZoneChanged{Zone: "demo.test.", Serial: 7, Changes: []events.RecordChange{{Name: "shop.demo.test.", Type: "A", Before: []string{"127.0.0.11"}, After: []string{"127.0.0.12"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js, events.ZoneSubject("demo.test.", "dns-1"), answer); err != nil {
		t.Fatal(err)
	}
}

// TestAWindowEndingAtATransitionKeepsItsPhases: a user copies a transition's time into --to to
// look at it alone. The DNS server changed its answer because of it a moment after: the
// transition's phases still show that answer, not "answer unchanged".
func TestAWindowEndingAtATransitionKeepsItsPhases(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	at := time.Now()
	answerW1(t, srv.JS, storeW1Down(t, srv.JS, at), at.Add(2*time.Millisecond))
	var out bytes.Buffer
	if err := replay.Run(ctx, srv.JS, replay.Options{Filter: replay.Filter{To: at}, Format: "text"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(serial 7)") || strings.Contains(out.String(), "answer unchanged") {
		t.Errorf("replay --to %s (w1's down) shows its phases without the answer it changed:\n%s", at.Format(time.RFC3339Nano), out.String())
	}
}

// TestAStreamEmptiedBeforeTheWindowIsNoGap: DRILLS keeps a drill's events 90 days. An install
// whose last drill is older holds none, and nothing of a window since was discarded: a replay
// of the last minutes says nothing of DRILLS, where it warned on every run that drill steps
// before now were missing.
func TestAStreamEmptiedBeforeTheWindowIsNoGap(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(flapYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.TypeDrillStarted, "drill/ann", time.Now(), events.DrillStarted{ID: "old", Name: "old", Apps: []string{"shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, srv.JS, events.DrillSubject("old"), e); err != nil {
		t.Fatal(err)
	}
	drills, err := srv.JS.Stream(ctx, events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	if err := drills.Purge(ctx); err != nil { // as its max_age discards them
		t.Fatal(err)
	}
	// The window, warm-up included, opens after the last drill event was stored.
	last := drills.CachedInfo().State.LastTime
	from := func() time.Time { return time.Now().Add(-time.Millisecond) }
	eventstest.Eventually(t, 5*time.Second, func() bool { return from().Add(-replay.Warmup(cfg, nil)).After(last) }, "the warm-up to pass the drill")
	window := from()
	replayed := func() []string {
		var warnings []string
		var out bytes.Buffer
		if err := replay.Run(ctx, srv.JS, replay.Options{Filter: replay.Filter{From: window}, Config: cfg, Format: "text", Warn: func(s string) { warnings = append(warnings, s) }}, &out); err != nil {
			t.Fatal(err)
		}
		return warnings
	}
	if warnings := replayed(); len(warnings) > 0 {
		t.Errorf("a replay of a window after DRILLS discarded its last drill warns %q", warnings)
	}
	// A drill of the window, discarded, is missed and said.
	if e, err = events.New(events.TypeDrillStarted, "drill/ann", time.Now(), events.DrillStarted{ID: "new", Name: "new", Apps: []string{"shop"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, srv.JS, events.DrillSubject("new"), e); err != nil {
		t.Fatal(err)
	}
	if err := drills.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if warnings := replayed(); len(warnings) != 1 || !strings.HasPrefix(warnings[0], "DRILLS no longer holds what it stored before ") {
		t.Errorf("a replay of a window whose drill DRILLS discarded warns %q, want DRILLS named", warnings)
	}
}

// TestAWindowsWarmUpReachesBackIntoTheVersionBefore: w1's streak of failures began under a 1s
// interval, and the team shortened the interval and stale_after in its midst; the failure
// that completed it came under the new version. Replaying from w1's down, the
// what-if reads back the streak as far as the version it began under says, not only as far as
// the version active when the window opens, and finds the down the decider recorded.
func TestAWindowsWarmUpReachesBackIntoTheVersionBefore(t *testing.T) {
	w := newW1Streak(t)
	var stored []time.Time
	var v2 *config.Config
	for i := range 3 {
		switch i {
		case 1:
			time.Sleep(800 * time.Millisecond) // the streak is made of time: older than the new version's warm-up
		case 2:
			v2 = w.version("v2.yaml", "interval: 10ms, timeout: 5ms, fall: 3, rise: 1, stale_after: 400ms")
		}
		stored = append(stored, w.fail(i))
	}
	if gap := stored[2].Sub(stored[1]); gap >= 400*time.Millisecond {
		t.Skipf("the last two failures came %s apart, a loaded machine: region a went stale under the new version", gap)
	}
	w.recordDown(stored[2])
	if out := w.whatIf(v2, stored[2]); !strings.Contains(out, sameAsRecorded) {
		t.Errorf("a window opening at w1's down, just after the interval was shortened, does not re-decide it as recorded:\n%s", out)
	}
}

// w1Streak is a history made by hand for the warm-up tests: app shop with one endpoint, w1,
// whose check is first w1Check (fall 3); region a's failures of w1 and the down the decider
// recorded for them; then other versions of the check.
type w1Streak struct {
	t      *testing.T
	ctx    context.Context
	srv    *eventstest.Server
	probes jetstream.Stream
}

const w1Check = "interval: 1s, timeout: 500ms, fall: 3, rise: 1, stale_after: 1h"

const w1YAML = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, ` + w1Check + `}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`

// sameAsRecorded is what a what-if prints when it re-decides the one recorded down as recorded.
const sameAsRecorded = "1 same, 0 earlier, 0 later, 0 would not happen, 0 new"

// newW1Streak starts the streams with w1YAML active.
func newW1Streak(t *testing.T) *w1Streak {
	t.Helper()
	w := &w1Streak{t: t, ctx: context.Background(), srv: eventstest.Start(t)}
	w.version("v1.yaml", w1Check)
	probes, err := w.srv.JS.Stream(w.ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	w.probes = probes
	return w
}

// version applies w1YAML with check in place of w1Check, and returns it.
func (w *w1Streak) version(name, check string) *config.Config {
	w.t.Helper()
	cfg, err := config.Publish(w.ctx, w.srv.JS, name, []byte(strings.Replace(w1YAML, w1Check, check, 1)), "alice@box")
	if err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

// fail stores region a's failure i of w1 and returns when PROBES stored it.
func (w *w1Streak) fail(i int) time.Time {
	w.t.Helper()
	r := events.ProbeResult{ID: fmt.Sprint("a-", i), At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "a", Prober: "p", Check: "http"}
	e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
	if err != nil {
		w.t.Fatal(err)
	}
	ack, err := events.Publish(w.ctx, w.srv.JS, events.ProbeSubject("a", "shop", "west", "w1"), e)
	if err != nil {
		w.t.Fatal(err)
	}
	m, err := w.probes.GetMsg(w.ctx, ack.Sequence)
	if err != nil {
		w.t.Fatal(err)
	}
	return m.Time
}

// recordDown stores the down a decider appends at at for the third failure, a-2.
func (w *w1Streak) recordDown(at time.Time) {
	w.t.Helper()
	down, err := events.Derived(events.TypeEndpointDown, "decider-1", "a-2", "k", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		Address: "127.0.0.11:8081", To: events.StatusDown, Reason: "a: 3 consecutive failures (fall 3)"})
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := events.Publish(w.ctx, w.srv.JS, events.EndpointStateSubject("shop", "west", "w1"), down); err != nil {
		w.t.Fatal(err)
	}
}

// whatIf runs the what-if with the live quorum over the history from from, cfg active, and
// returns what it printed.
func (w *w1Streak) whatIf(cfg *config.Config, from time.Time) string {
	w.t.Helper()
	s, err := replay.ParseSettings("quorum=0.5")
	if err != nil {
		w.t.Fatal(err)
	}
	var out bytes.Buffer
	o := replay.Options{Filter: replay.Filter{From: from}, Config: cfg, WhatIf: &s, Versions: true}
	if err := replay.Run(w.ctx, w.srv.JS, o, &out); err != nil {
		w.t.Fatal(err)
	}
	return out.String()
}

package replay_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/replay"
)

// TestATextTimelineKeepsOneEventALineWhateverAReasonHolds: an operator's override reason is
// free text, pasted from notes with line breaks and tabs, or a terminal's escape sequences. The
// text timeline stays one event a line (a second line of a reason is no line of its own that
// `grep transition` finds, nor one that looks like an event), and prints those characters
// escaped instead of handing them to the terminal.
func TestATextTimelineKeepsOneEventALineWhateverAReasonHolds(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	reason := "maintenance\n2026-12-01T10:00:00.000Z  transition  shop/west/w1  up → down: forged\tcolumn \x1b[2J\r"
	o, err := events.New(events.TypeOverrideSet, "api", at,
		events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionForceDown, Reason: reason, By: "ops@host"})
	if err != nil {
		t.Fatal(err)
	}
	tl := replay.Build([]replay.Record{
		{Stream: events.StreamState, Seq: 1, Subject: "detour.state.override.shop.west.w1", Stored: at, Env: o},
	}, replay.Filter{})
	var out bytes.Buffer
	if err := replay.WriteText(&out, tl, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := `force_down by ops@host: maintenance\n2026-12-01T10:00:00.000Z  transition  shop/west/w1  up → down: forged\tcolumn \x1b[2J\r`
	if len(lines) != 2 || !strings.HasSuffix(lines[0], want) || strings.ContainsAny(out.String(), "\t\r\x1b") {
		t.Errorf("one override printed as %d lines, want it on one ending %q, then the count:\n%s", len(lines), want, out.String())
	}
}

// TestAnEndpointsTimelineShowsWhatItCausedAndNotOtherEndpoints: `detour replay --endpoint w1`
// follows w1: its transitions, the overrides of it and of its pool, and the pool transitions,
// answer changes and route tables its transitions caused; not e1's, nor the pool transition and
// answer change e1's caused.
func TestAnEndpointsTimelineShowsWhatItCausedAndNotOtherEndpoints(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var recs []replay.Record
	add := func(stream, subject string) func(events.Envelope, error) events.Envelope {
		return func(e events.Envelope, err error) events.Envelope {
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, replay.Record{Stream: stream, Seq: uint64(len(recs) + 1), Subject: subject, Stored: at.Add(time.Duration(len(recs)) * time.Millisecond), Env: e})
			return e
		}
	}
	tr := func(pool, endpoint string) events.Transition {
		return events.Transition{App: "shop", Pool: pool, Endpoint: endpoint, From: events.StatusUp, To: events.StatusDown, Reason: pool + "/" + endpoint}
	}
	zone := func(name string) events.ZoneChanged {
		return events.ZoneChanged{Zone: "demo.test.", Serial: 2, Changes: []events.RecordChange{{Name: name, Type: "A"}}}
	}
	ov := func(pool, endpoint string) events.Override {
		return events.Override{App: "shop", Pool: pool, Endpoint: endpoint, Action: events.ActionDrain, Reason: "override " + pool, By: "ops"}
	}
	add(events.StreamState, "detour.state.override.shop.west._pool")(tryNew(events.TypeOverrideSet, ov("west", "")))
	add(events.StreamState, "detour.state.override.shop.east._pool")(tryNew(events.TypeOverrideSet, ov("east", "")))
	w1 := add(events.StreamState, events.EndpointStateSubject("shop", "west", "w1"))(tryNew(events.TypeEndpointDown, tr("west", "w1")))
	e1 := add(events.StreamState, events.EndpointStateSubject("shop", "east", "e1"))(tryNew(events.TypeEndpointDown, tr("east", "e1")))
	west := add(events.StreamState, "detour.state.pool.shop.west")(events.Derived(events.TypePoolDown, "d", w1.ID, "pw", at, tr("west", "")))
	east := add(events.StreamState, "detour.state.pool.shop.east")(events.Derived(events.TypePoolDown, "d", e1.ID, "pe", at, tr("east", "")))
	add(events.StreamDNS, "detour.dns.demo_test.s1")(events.Derived(events.TypeZoneChanged, "dns", west.ID, "zw", at, zone("west.demo.test.")))
	add(events.StreamDNS, "detour.dns.demo_test.s1")(events.Derived(events.TypeZoneChanged, "dns", east.ID, "ze", at, zone("east.demo.test.")))
	tl := replay.Build(recs, replay.Filter{Endpoint: "w1"})
	var got []string
	for _, it := range tl.Items {
		got = append(got, it.Kind+" "+it.Reason)
	}
	want := []string{"override override west", "transition west/w1", "transition west/", "answer west.demo.test. A (none) → (none)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay --endpoint w1 shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func tryNew(typ string, payload any) (events.Envelope, error) {
	return events.New(typ, "test", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), payload)
}

// TestAnAppsTimelineShowsTheDrillsOnIt: `detour replay --app shop` during a drill on shop shows
// the drill's start, steps and rollback beside the transitions they caused, not those of a
// drill on another app.
func TestAnAppsTimelineShowsTheDrillsOnIt(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var recs []replay.Record
	for _, d := range []struct{ id, app string }{{"lose-west-1", "shop"}, {"lose-blog-2", "blog"}} {
		started, err := events.New(events.TypeDrillStarted, "drill/ann", at, events.DrillStarted{ID: d.id, Name: d.id, Apps: []string{d.app}, RollbackAt: at.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		step, err := events.New(events.TypeDrillStepStarted, "drill/ann", at, events.DrillStep{Step: "fail pool " + d.app + "/west", Failures: []events.Failure{{Kind: events.FailPool, App: d.app, Pool: "west"}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []events.Envelope{started, step} {
			recs = append(recs, replay.Record{Stream: events.StreamDrills, Seq: uint64(len(recs) + 1), Subject: "detour.drill." + d.id, Stored: at, Env: e})
		}
	}
	var got []string
	for _, it := range replay.Build(recs, replay.Filter{App: "shop"}).Items {
		got = append(got, it.Drill+" "+it.Action)
	}
	if want := []string{"lose-west-1 started", "lose-west-1 step_started"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay --app shop shows the drill items %q, want %q", got, want)
	}
}

// A check's error holds what the checked server said (a TLS certificate's names, for one), and a
// prober's credentials write any text in its results: the text timeline shows the control
// characters in them as escapes, so that none reaches the operator's terminal, where an escape
// sequence could retitle it, write its clipboard or rewrite the lines above, a newline
// print a line that looks like another event, and a bidirectional override (U+202E, which the
// escapes of control characters before it left raw) show a name reversed.
func TestTheTextTimelinePrintsNoControlCharacterAResultHolds(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 4, 0, time.UTC)
	b := replay.NewBuilder(replay.Filter{})
	for i, ok := range []bool{true, false} {
		b.Add(&replay.Record{Stream: events.StreamProbes, Seq: uint64(i + 1), Subject: events.ProbeSubject("us-west", "shop", "us-west", "w1"),
			Stored: at.Add(time.Duration(i) * time.Second), Results: []events.ProbeResult{{
				ID: "r" + string(rune('1'+i)), App: "shop", Pool: "us-west", Endpoint: "w1\x1b[8m", Region: "us-west", OK: ok, ErrorClass: "tls",
				Error: "x509: certificate is valid for \x1b]52;c;aGk=\x07, not shop.test \u202etset.pohs\n2026-11-30T01:02:05.000Z  transition  shop/us-west/w1  down → up"}}})
	}
	var out bytes.Buffer
	if err := replay.WriteText(&out, b.Timeline(), nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("the text timeline has %d lines, want 2 (the failure, the count):\n%s", len(lines), out.String())
	}
	if j := strings.IndexFunc(out.String(), func(r rune) bool { return r < ' ' && r != '\n' || r >= 0x7f && r < 0xa0 }); j >= 0 {
		t.Errorf("the text timeline holds a control character at %d: %q", j, out.String())
	}
	for _, want := range []string{`shop/us-west/w1\x1b[8m`, `valid for \x1b]52;c;aGk=\a, not shop.test \u202etset.pohs\n2026-11-30T01:02:05.000Z`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line 1 = %q, want it to show %s", lines[0], want)
		}
	}
}

// TestAnEndpointsTimelineShowsItsPoolGoingDown: w1 goes down, then w2, the last endpoint of
// their pool, takes the pool down and the answer changes. `detour replay --endpoint w1` shows
// its pool going down and the answer that changed, not w2's own transition: the pool's
// transition names w2's as its cause, the last of those that took it down.
func TestAnEndpointsTimelineShowsItsPoolGoingDown(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var recs []replay.Record
	add := func(stream, subject string, e events.Envelope, err error) events.Envelope {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, replay.Record{Stream: stream, Seq: uint64(len(recs) + 1), Subject: subject, Stored: at.Add(time.Duration(len(recs)) * time.Millisecond), Env: e})
		return e
	}
	tr := func(endpoint string) events.Transition {
		return events.Transition{App: "shop", Pool: "west", Endpoint: endpoint, From: events.StatusUp, To: events.StatusDown, Reason: "west/" + endpoint}
	}
	w1, err := tryNew(events.TypeEndpointDown, tr("w1"))
	add(events.StreamState, events.EndpointStateSubject("shop", "west", "w1"), w1, err)
	w2, err := tryNew(events.TypeEndpointDown, tr("w2"))
	add(events.StreamState, events.EndpointStateSubject("shop", "west", "w2"), w2, err)
	west, err := events.Derived(events.TypePoolDown, "d", w2.ID, "pw", at, tr(""))
	add(events.StreamState, "detour.state.pool.shop.west", west, err)
	answer, err := events.Derived(events.TypeZoneChanged, "dns", west.ID, "zw", at, events.ZoneChanged{Zone: "demo.test.", Serial: 2, Changes: []events.RecordChange{{Name: "shop.demo.test.", Type: "A"}}})
	add(events.StreamDNS, "detour.dns.demo_test.s1", answer, err)
	var got []string
	for _, it := range replay.Build(recs, replay.Filter{Endpoint: "w1"}).Items {
		got = append(got, it.Kind+" "+it.Reason)
	}
	if want := []string{"transition west/w1", "transition west/", "answer shop.demo.test. A (none) → (none)"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay --endpoint w1 shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestATimelineCountsTheUnknownEventsOfItsWindow: STATE keeps every event, so an event of a
// later version's type met once (an upgrade rolled back) stays in it. A replay of a window after
// it misses nothing: it counts none, where every replay since warned of it.
func TestATimelineCountsTheUnknownEventsOfItsWindow(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	e, err := events.New("detour.endpoint.down.v2", "decider-9", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	recs := []replay.Record{{Stream: events.StreamState, Seq: 1, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: at, Env: e}}
	for _, tc := range []struct {
		f    replay.Filter
		want uint64
	}{
		{replay.Filter{}, 1},
		{replay.Filter{From: at.Add(-time.Minute), To: at}, 1},
		{replay.Filter{From: at.Add(time.Hour)}, 0},
		{replay.Filter{To: at.Add(-time.Minute)}, 0},
	} {
		if got := replay.Build(recs, tc.f).Unknown; got != tc.want {
			t.Errorf("replay --from %s --to %s counts %d unknown events, want %d", tc.f.From, tc.f.To, got, tc.want)
		}
	}
}

// TestADrillsPoolDownIsToldAsTheDrillsOnTheTimeline: a drill fails w1 and takes west down.
// `detour replay` prints both transitions with [drill d1]: the pool's reason names only w1's
// down and read as an outage's, though STATE marks the pool's down with the drill.
func TestADrillsPoolDownIsToldAsTheDrillsOnTheTimeline(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w1, err := events.New(events.TypeEndpointDown, "d", at, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		From: events.StatusUp, To: events.StatusDown, Reason: "drill d1: simulated failure of pool shop/west", Drill: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	west, err := events.Derived(events.TypePoolDown, "d", w1.ID, "pw", at, events.Transition{App: "shop", Pool: "west",
		From: events.StatusUp, To: events.StatusDown, Reason: "w1 down: 0 of 1 endpoints serving, need 1", Drill: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	tl := replay.Build([]replay.Record{
		{Stream: events.StreamState, Seq: 1, Subject: events.EndpointStateSubject("shop", "west", "w1"), Stored: at, Env: w1},
		{Stream: events.StreamState, Seq: 2, Subject: events.PoolStateSubject("shop", "west"), Stored: at, Env: west},
	}, replay.Filter{})
	var out bytes.Buffer
	if err := replay.WriteText(&out, tl, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[drill d1] up → down: drill d1: simulated", "[drill d1] up → down: w1 down: 0 of 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("detour replay prints\n%s\nwant a line with %q", out.String(), want)
		}
	}
}

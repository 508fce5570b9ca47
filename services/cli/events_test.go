package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

func publish(t *testing.T, s *eventstest.Server, subject, typ string, at time.Time, data any) {
	t.Helper()
	env, err := events.New(typ, "decider-1", at, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), s.JS, subject, env); err != nil {
		t.Fatal(err)
	}
}

func TestEventsPrintsTheHistoryAsLinesWithoutATerminal(t *testing.T) {
	s := eventstest.Start(t)
	at := time.Date(2026, 11, 30, 1, 2, 4, 10e6, time.UTC)
	publish(t, s, events.EndpointStateSubject("shop", "us-west", "127-0-0-11_8081"), events.TypeEndpointDown, at,
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "127-0-0-11_8081", From: events.StatusUp, To: events.StatusDown, Reason: "3 consecutive failures"})
	publish(t, s, events.ProbeSubject("us-west", "shop", "us-west", "127-0-0-11_8081"), events.TypeProbeCompleted, at,
		events.ProbeResult{App: "shop", Pool: "us-west", Endpoint: "127-0-0-11_8081", Region: "us-west", OK: true, LatencyMicros: 1500})
	if _, err := s.JS.Publish(context.Background(), "detour.state.edge.edge-west", []byte("not an event")); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runMain("events", "--nats", s.URL)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("detour events: exit %d, %d lines, want 0 and 2 (STATE only):\n%s%s", code, len(lines), stdout, stderr)
	}
	want := "2026-11-30T01:02:04.010Z  endpoint.down.v1         detour.state.endpoint.shop.us-west.127-0-0-11_8081  shop/us-west/127-0-0-11_8081: up → down: 3 consecutive failures (decider-1)"
	if lines[0] != want {
		t.Errorf("line 1:\n%s\nwant:\n%s", lines[0], want)
	}
	if !strings.Contains(lines[1], "(malformed)") || !strings.Contains(lines[1], "detour.state.edge.edge-west") {
		t.Errorf("line 2 = %q, want the malformed message named with its subject", lines[1])
	}

	_, stdout, _ = runMain("events", "--nats", s.URL, "--stream", "PROBES")
	if !strings.Contains(stdout, "shop/us-west/127-0-0-11_8081 from us-west: ok in 1.5ms (decider-1)") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("detour events --stream PROBES:\n%s\nwant the one probe result", stdout)
	}

	_, stdout, _ = runMain("events", "--nats", s.URL, "--subject", "detour.state.endpoint.>", "--json")
	var got storedEvent
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Stream != "STATE" || got.Seq != 1 || !strings.Contains(string(got.Event), `"type":"detour.endpoint.down.v1"`) {
		t.Errorf("detour events --json = %q (%v), want one JSON line with the stream, sequence and the event", stdout, err)
	}

	_, stdout, _ = runMain("events", "--nats", s.URL, "--since", "1ns")
	if stdout != "" {
		t.Errorf("detour events --since 1ns printed:\n%s\nwant nothing: every event is older", stdout)
	}
}

func TestEventsFollowPrintsNewEventsAsTheyArrive(t *testing.T) {
	s := eventstest.Start(t)
	at := time.Date(2026, 11, 30, 1, 2, 4, 0, time.UTC)
	publish(t, s, events.EdgeStateSubject("edge-west"), events.TypeEdgeDown, at, events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "3 missed heartbeats"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out eventstest.Logs
	done := make(chan error, 1)
	go func() {
		done <- printEvents(ctx, s.JS, eventsOptions{streams: defaultEventStreams, follow: true}, &out, time.Now())
	}()
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "edge edge-west: up → down") }, "the history was not printed")
	publish(t, s, events.EdgeStateSubject("edge-west"), events.TypeEdgeUp, at.Add(time.Second), events.Transition{Edge: "edge-west", From: events.StatusDown, To: events.StatusUp, Reason: "heartbeats resumed"})
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "edge edge-west: down → up: heartbeats resumed") }, "the new event was not printed:\n%s", &out)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended with %v, want nil on interrupt", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end within 5s of its context")
	}
}

func runMain(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestEventsSummarisesAnAppsRouteLikeAWholeTable(t *testing.T) {
	route := events.AppRoute{App: "shop", Pool: "west", Secondary: &events.SecondaryRoute{Edge: "edge-east"}}
	one, err := events.New(events.TypeRouteComputed, "controller-1", time.Now(), events.EdgeRoute{Edge: "edge-west", Route: route})
	if err != nil {
		t.Fatal(err)
	}
	table, err := events.New(events.TypeRoutesComputed, "controller-1", time.Now(), events.RouteTable{Edge: "edge-west", Apps: []events.AppRoute{route}})
	if err != nil {
		t.Fatal(err)
	}
	want := "edge edge-west: shop → west (down, via edge-east)"
	for _, e := range []events.Envelope{one, table} {
		if got := summary(e); !strings.HasPrefix(got, want) {
			t.Errorf("summary of %s = %q, want it to start %q", e.Type, got, want)
		}
	}
}

// TestEventsSaysARouteStoredAgainIsUnchanged: the controller stores an app's unchanged route again
// before ROUTES's byte bound would discard it; the line says so, rather than reading as a change.
func TestEventsSaysARouteStoredAgainIsUnchanged(t *testing.T) {
	route := events.AppRoute{App: "shop", Pool: "west", Available: true}
	again, err := events.New(events.TypeRouteComputed, "controller-1", time.Now(), events.EdgeRoute{Edge: "edge-west", Route: route, RefreshOf: 42})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(again), "edge edge-west: shop → west (unchanged: seq 42 stored again) (controller-1)"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
}

func TestEventsSaysWhichPartOfAZoneVersionAnEventTells(t *testing.T) {
	change := []events.RecordChange{{Name: "shop.demo.test.", Type: "A", After: []string{"127.0.0.12"}}}
	whole, err := events.New(events.TypeZoneChanged, "dns-1", time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: 7, Changes: change})
	if err != nil {
		t.Fatal(err)
	}
	part, err := events.New(events.TypeZoneChanged, "dns-1", time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: 7, Changes: change, Part: 2, Parts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(whole), "demo.test serial 7: shop.demo.test A 127.0.0.12"; !strings.HasPrefix(got, want) || strings.Contains(got, "part") {
		t.Errorf("summary of a whole version = %q, want it to start %q and name no part", got, want)
	}
	if got, want := summary(part), "demo.test serial 7 (part 2 of 3): shop.demo.test A 127.0.0.12"; !strings.HasPrefix(got, want) {
		t.Errorf("summary of a version's part = %q, want it to start %q", got, want)
	}
}

func TestEventsHelpNamesTheColumnsALinePrints(t *testing.T) {
	s := eventstest.Start(t)
	publish(t, s, events.EndpointStateSubject("shop", "us-west", "127-0-0-11_8081"), events.TypeEndpointDown, time.Now(),
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "127-0-0-11_8081", From: events.StatusUp, To: events.StatusDown, Reason: "3 consecutive failures"})
	_, stdout, _ := runMain("events", "--nats", s.URL)
	columns := regexp.MustCompile(`  +`).Split(strings.TrimSpace(stdout), -1)
	_, help, _ := runMain("help", "events")
	listed := regexp.MustCompile(`one line each \(([^)]*)\)`).FindStringSubmatch(help)
	if listed == nil || len(strings.Split(listed[1], ", ")) != len(columns) {
		t.Errorf("detour help events lists the columns %q; a line has %d: %q", listed, len(columns), columns)
	}
}

func TestEventsSaysWhatAnAlertAttemptAndADrillStepRecord(t *testing.T) {
	s := eventstest.Start(t)
	at := time.Date(2026, 11, 30, 1, 2, 4, 0, time.UTC)
	publish(t, s, events.AlertSubject("oncall"), events.TypeAlertAttempted, at, events.AlertAttempt{Alert: "oncall", Kind: "failover",
		Webhook: "https://hooks.example.com/…#1a2b3c4d", Delivery: "d1", Attempt: 2, Result: "failed", HTTPStatus: 503, Error: "status 503", RetryInMS: 2000})
	publish(t, s, events.AlertSubject("oncall"), events.TypeAlertClaimed, at, events.AlertClaim{Alert: "oncall", Kind: "failover",
		Webhook: "https://hooks.example.com/…#1a2b3c4d", Delivery: "d1", Attempt: 3})
	publish(t, s, events.DrillSubject("lose-west-1"), events.TypeDrillStepStarted, at, events.DrillStep{Index: 0, Step: "fail pool shop/us-west"})
	publish(t, s, events.DrillSubject("lose-west-1"), events.TypeDrillRolledBack, at, events.DrillRolledBack{By: "ann@host", Reason: "requested"})
	_, stdout, stderr := runMain("events", "--nats", s.URL, "--stream", "ALERTS,DRILLS")
	for _, want := range []string{
		"oncall failover to https://hooks.example.com/…#1a2b3c4d, attempt 2: failed (HTTP 503): status 503; next in 2s (decider-1)",
		"oncall failover to https://hooks.example.com/…#1a2b3c4d, attempt 3: claimed (decider-1)",
		"detour.drill.lose-west-1  step 1: fail pool shop/us-west (decider-1)",
		"detour.drill.lose-west-1  rolled back: requested by ann@host (decider-1)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("detour events --stream ALERTS,DRILLS lacks %q:\n%s%s", want, stdout, stderr)
		}
	}
}

// A DNS server's first serial after it starts, or after a version that changed no answer,
// changes no record: its line says so instead of ending in an empty list.
func TestEventsSaysWhenAZoneVersionChangedNoRecord(t *testing.T) {
	none, err := events.New(events.TypeZoneChanged, "dns-1", time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: 7})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(none), "demo.test serial 7: no record changed (dns-1)"; got != want {
		t.Errorf("summary of a version that changed no record = %q, want %q", got, want)
	}
}

// An earlier version kept the rejections in CONFIG, and `detour apply` from this one leaves
// those there, recording the new ones in REJECTIONS: --subject 'detour.config.rejected.>' shows
// both, and, before that apply, the ones CONFIG still takes.
func TestEventsShowsTheRejectionsAnEarlierVersionKeptInConfig(t *testing.T) {
	s := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	ctx := context.Background()
	o := events.StreamOptions{Memory: true}
	for _, sc := range events.Streams(o) { // the earlier version's: CONFIG holds every subject of the configuration
		switch sc.Name {
		case events.StreamRejections:
			continue
		case events.StreamConfig:
			sc.Subjects = []string{events.SubjectConfig}
		}
		if _, err := s.JS.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 30, 1, 2, 4, 0, time.UTC)
	publish(t, s, config.RejectedSubject("dns", "dns-1"), events.TypeConfigRejected, at, config.Rejected{Version: 3, Role: "dns/dns-1", Problems: []string{"zones: bad"}})
	rejections := func() []string {
		t.Helper()
		code, stdout, stderr := runMain("events", "--nats", s.URL, "--subject", "detour.config.rejected.>")
		if code != 0 {
			t.Fatalf("detour events --subject 'detour.config.rejected.>': exit %d: %s", code, stderr)
		}
		return strings.Fields(stdout)
	}
	if got := rejections(); !slices.Contains(got, "detour.config.rejected.dns.dns-1") {
		t.Errorf("before the upgrade's apply, detour events --subject 'detour.config.rejected.>' printed %q, want the rejection CONFIG holds", got)
	}
	if err := events.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	publish(t, s, config.RejectedSubject("dns", "dns-2"), events.TypeConfigRejected, at.Add(time.Second), config.Rejected{Version: 4, Role: "dns/dns-2", Problems: []string{"zones: bad"}})
	got := rejections()
	if i, j := slices.Index(got, "detour.config.rejected.dns.dns-1"), slices.Index(got, "detour.config.rejected.dns.dns-2"); i < 0 || j < i {
		t.Errorf("after it, detour events --subject 'detour.config.rejected.>' printed %q, want the rejection CONFIG kept, then the one REJECTIONS holds", got)
	}
}

// A check's error holds what the checked server said (a TLS certificate's names, for one), and a
// prober's or an edge's credentials write any text in their events: printed raw, an escape
// sequence in it would retitle the operator's terminal, write its clipboard or rewrite the lines
// above, and a newline would print a line of its own that looks like another event.
func TestEventsPrintsNoControlCharacterAnEventHolds(t *testing.T) {
	s := eventstest.Start(t)
	at := time.Date(2026, 11, 30, 1, 2, 4, 10e6, time.UTC)
	forged := "\n2026-11-30T01:02:05.000Z  endpoint.up.v1           detour.state.endpoint.shop.us-west.w1  shop/us-west/w1: down → up: 2 consecutive successes (decider-1)"
	env, err := events.New(events.TypeProbeCompleted, "prober-us-west-1\u009b2J", at, events.ProbeResult{
		App: "shop", Pool: "us-west", Endpoint: "w1", Region: "us-west", ErrorClass: "tls",
		Error: "x509: certificate is valid for \x1b]52;c;ZWNobyBwd25lZA==\x07, not shop.test" + forged})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), s.JS, events.ProbeSubject("us-west", "shop", "us-west", "w1"), env); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(context.Background(), "detour.probe.us-west.\x1b[2J.us-west.w1", []byte("not an event")); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runMain("events", "--nats", s.URL, "--stream", "PROBES")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("detour events --stream PROBES: exit %d, %d lines, want 0 and 2 (one per message):\n%s%s", code, len(lines), stdout, stderr)
	}
	for i, line := range lines {
		if j := strings.IndexFunc(line, func(r rune) bool { return r < ' ' || r >= 0x7f && r < 0xa0 }); j >= 0 {
			t.Errorf("line %d holds the control character %U at %d: %q", i+1, line[j], j, line)
		}
	}
	for _, want := range []string{`valid for \x1b]52;c;ZWNobyBwd25lZA==\a, not shop.test\n2026-11-30T01:02:05.000Z`, `(prober-us-west-1\u009b2J)`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line 1 = %q, want it to show %s", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], `detour.probe.us-west.\x1b[2J.us-west.w1`) {
		t.Errorf("line 2 = %q, want the malformed message's subject with its escape shown", lines[1])
	}
}

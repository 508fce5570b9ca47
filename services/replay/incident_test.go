package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/replay"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
)

// incident is a recorded incident: Detour ran in process while a backend was killed and brought
// back and an edge was stopped.
type incident struct {
	js   jetstream.JetStream
	cfg  *config.Config
	west string // the killed endpoint's name
	// raw are every STATE, DNS and ROUTES message, in stream order.
	raw map[string][]events.Envelope
}

// recordIncident runs Detour with two backends and two edges, kills the west backend, brings it
// back, stops edge-a, and returns the streams it left.
func recordIncident(t *testing.T) incident {
	t.Helper()
	west, err := demo.StartBackend("west", "127.0.0.51:0")
	if err != nil {
		t.Fatal(err)
	}
	east, err := demo.StartBackend("east", "127.0.0.52:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = east.Close() })
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms, fall: 3, rise: 2}
    pools:
      - {name: west, region: us-west, endpoints: [{address: %[1]q}]}
      - {name: east, region: us-east, endpoints: [{address: %[2]q}]}
  - name: www
    fqdn: www.demo.test
    ttl: 5
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms, fall: 3, rise: 2}
    ingress: [edge-a, edge-b]
    primary_edge: edge-a
    pools:
      - {name: west, region: us-west, endpoints: [{address: %[1]q}]}
      - {name: east, region: us-east, endpoints: [{address: %[2]q}]}
edges:
  - {name: edge-a, region: us-west, hostname: edge-a.demo.test, address: 127.0.0.53, heartbeat: {interval: 250ms, fall: 3},
     apps: [{app: www, listen: %[3]q, secondary: edge-b}]}
  - {name: edge-b, region: us-east, hostname: edge-b.demo.test, address: 127.0.0.54, heartbeat: {interval: 250ms, fall: 3},
     apps: [{app: www, listen: %[4]q, secondary: edge-a}]}
`, west.Addr(), east.Addr(), stacktest.FreePort(t, "127.0.0.53"), stacktest.FreePort(t, "127.0.0.54"))
	st, js, _ := stacktest.Start(t, doc)
	westName := st.Config.Apps[0].Pools[0].Endpoints[0].Name
	westHost, eastHost := host(west.Addr()), host(east.Addr())
	waitState(t, js, events.EndpointStateSubject("shop", "west", westName), events.TypeEndpointUp)
	waitState(t, js, events.EdgeStateSubject("edge-a"), events.TypeEdgeUp)
	waitAnswer(t, st.DNSAddr, "shop.demo.test.", westHost, "at start")
	waitAnswer(t, st.DNSAddr, "www.demo.test.", "edge-a.demo.test.", "at start")

	addr := west.Addr()
	_ = west.Close()
	waitAnswer(t, st.DNSAddr, "shop.demo.test.", eastHost, "after the west backend was killed")
	west, err = demo.StartBackend("west", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = west.Close() })
	waitAnswer(t, st.DNSAddr, "shop.demo.test.", westHost, "after the west backend came back")
	st.Edge("edge-a").Stop()
	waitAnswer(t, st.DNSAddr, "www.demo.test.", "edge-b.demo.test.", "after edge-a stopped")

	inc := incident{js: js, cfg: st.Config, west: westName, raw: map[string][]events.Envelope{}}
	// The answers and route tables that follow the last transition are published right after it.
	eventstest.Eventually(t, 2*time.Second, func() bool {
		for _, name := range []string{events.StreamState, events.StreamDNS, events.StreamRoutes} {
			inc.raw[name] = readAll(t, js, name)
		}
		last := inc.raw[events.StreamState][len(inc.raw[events.StreamState])-1]
		return slices.ContainsFunc(inc.raw[events.StreamDNS], func(e events.Envelope) bool { return e.Cause == last.ID })
	}, "the answer change of edge-a's transition is recorded")
	return inc
}

// waitState polls until STATE's last event on subject is of type typ.
func waitState(t *testing.T, js jetstream.JetStream, subject, typ string) {
	t.Helper()
	s, err := js.Stream(context.Background(), events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(context.Background(), s, subject)
		return err == nil && ok && e.Type == typ
	}, "STATE records %s on %s", typ, subject)
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }

// waitAnswer polls the DNS server until name's first answer record holds want.
func waitAnswer(t *testing.T, server, name, want, what string) {
	t.Helper()
	got := ""
	eventstest.Eventually(t, 5*time.Second, func() bool {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, server)
		if err != nil || len(r.Answer) == 0 {
			return false
		}
		switch rr := r.Answer[0].(type) {
		case *dns.A:
			got = rr.A.String()
		case *dns.CNAME:
			got = rr.Target
		}
		return got == want
	}, "%s: %s answers %q, want %q", what, name, &got, want)
}

func readAll(t *testing.T, js jetstream.JetStream, stream string) []events.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Envelope
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// replayJSON runs `detour replay --format json` over the incident and decodes its lines.
func replayJSON(t *testing.T, inc incident, o replay.Options) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	o.Config, o.Format = inc.cfg, "json"
	if err := replay.Run(context.Background(), inc.js, o, &out); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestAReplayOfARecordedIncidentListsEveryEventInOrderWithItsPhases(t *testing.T) {
	inc := recordIncident(t)
	b := replay.NewBuilder(replay.Filter{})
	if err := replay.Read(context.Background(), inc.js, replay.Window{}, b.Add); err != nil {
		t.Fatal(err)
	}
	tl := b.Timeline()

	// Every STATE, DNS and ROUTES event is in the timeline once, in stream order, and the whole
	// timeline is in the order the streams stored it.
	for stream, envs := range inc.raw {
		var ids []string
		for _, it := range tl.Items {
			if it.Stream == stream {
				ids = append(ids, it.ID)
			}
		}
		var want []string
		for _, e := range envs {
			if e.Type != events.TypeConfigApplied {
				want = append(want, e.ID)
			}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s events in the timeline:\n%v\nwant, in stream order:\n%v", stream, ids, want)
		}
	}
	for i := 1; i < len(tl.Items); i++ {
		if tl.Items[i].Stored.Before(tl.Items[i-1].Stored) {
			t.Errorf("item %d (%s stored %s) comes after item %d stored later (%s)", i, tl.Items[i].Kind, tl.Items[i].Stored, i-1, tl.Items[i-1].Stored)
		}
	}

	// The killed endpoint: first failed probes from both regions, down, then passing probes, up.
	var story []string
	for _, it := range tl.Items {
		if it.Endpoint == inc.west && it.App == "shop" {
			story = append(story, it.Kind+" "+string(it.To)+it.Region)
		}
	}
	for _, want := range []string{"probe_failed us-west", "probe_failed us-east", "transition down", "probe_passed us-west", "transition up"} {
		if !slices.Contains(story, want) {
			t.Errorf("the killed endpoint's story lacks %q: %v", want, story)
		}
	}

	// Each phase matches the timestamps of the events it spans.
	byID := map[string]*replay.Item{}
	for i := range tl.Items {
		byID[tl.Items[i].ID] = &tl.Items[i]
	}
	checked := 0
	for i := range tl.Items {
		it := &tl.Items[i]
		p := it.Phases
		if p == nil {
			continue
		}
		if !p.Threshold.Equal(it.Time) || !p.Appended.Equal(it.Stored) {
			t.Errorf("%s %s: threshold %s and appended %s, want the event's time %s and stored time %s", it.ID, it.To, p.Threshold, p.Appended, it.Time, it.Stored)
		}
		if p.Append.D() != p.Appended.Sub(p.Threshold) {
			t.Errorf("%s: append phase %s, want %s", it.ID, p.Append.D(), p.Appended.Sub(p.Threshold))
		}
		// The answer change is the first DNS event caused by this transition or one derived from it.
		var answer *replay.Item
		for j := i + 1; j < len(tl.Items) && answer == nil; j++ {
			a := &tl.Items[j]
			if a.Kind == replay.KindAnswer && (a.Cause == it.ID || (byID[a.Cause] != nil && byID[a.Cause].Cause == it.ID)) {
				answer = a
			}
		}
		if answer != nil {
			if !p.Answered.Equal(answer.Time) || p.Serial != answer.Serial || p.Answer.D() != answer.Time.Sub(it.Stored) {
				t.Errorf("%s: answered %s serial %d after %s, want %s serial %d after %s", it.ID, p.Answered, p.Serial, p.Answer.D(), answer.Time, answer.Serial, answer.Time.Sub(it.Stored))
			}
			checked++
		}
		if it.App != "shop" || it.Endpoint != inc.west {
			continue
		}
		// The first probe is the earliest first failed (or passing) probe since the previous transition.
		kind := replay.KindProbeFailed
		if it.To == events.StatusUp {
			kind = replay.KindProbePassed
		}
		var first time.Time
		for j := i - 1; j >= 0 && !(tl.Items[j].Kind == replay.KindTransition && tl.Items[j].Endpoint == inc.west && tl.Items[j].App == "shop"); j-- {
			if q := tl.Items[j]; q.Kind == kind && q.Endpoint == inc.west && q.App == "shop" {
				first = q.Time
			}
		}
		if it.From != events.StatusUnknown && (first.IsZero() || !p.FirstProbe.Equal(first) || p.Detect.D() != it.Time.Sub(first)) {
			t.Errorf("%s → %s: first probe %s, detection %s; want %s and %s", it.From, it.To, p.FirstProbe, p.Detect.D(), first, it.Time.Sub(first))
		}
		// fall 3 at a 250ms interval: the third failure comes two intervals after the first (the
		// checks keep their instants: no jitter), less what the first result's check (its start
		// and run) and its publishing took more than the third's (a probe's time in the timeline
		// is when PROBES stored it: 9.4 ms more in one CI run on a loaded machine). Counted from
		// the second failure, it would be one interval.
		if it.From == events.StatusUp && (p.Detect.D() < 2*250*time.Millisecond-50*time.Millisecond || p.Answered.IsZero()) {
			t.Errorf("the west endpoint went down %s after its first failed probe with answer at %s, want (fall−1) × 250ms and an answer change", p.Detect.D(), p.Answered)
		}
	}
	if checked < 3 {
		t.Errorf("%d transitions had an answer change, want at least 3 (shop down and up, www's CNAME)", checked)
	}

	// The text form greps; the JSON form is one object per line.
	var text bytes.Buffer
	if err := replay.Run(context.Background(), inc.js, replay.Options{Format: "text"}, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "phases") || !strings.Contains(text.String(), "edge-a") {
		t.Errorf("the text replay lacks the phases or edge-a:\n%s", text.String())
	}
	lines := replayJSON(t, inc, replay.Options{Filter: replay.Filter{App: "shop"}})
	for _, l := range lines {
		if l["app"] != "shop" {
			t.Errorf("--app shop kept %v", l)
		}
	}
}

// transitions counts the what-if pairs by verdict for the killed endpoint.
func verdicts(t *testing.T, inc incident, settings string) map[string][]replay.Pair {
	t.Helper()
	s, err := replay.ParseSettings(settings)
	if err != nil {
		t.Fatal(err)
	}
	w := replay.NewWhatIf(inc.cfg, s, time.Time{}, time.Time{})
	if err := replay.Read(context.Background(), inc.js, replay.Window{}, w.Add); err != nil {
		t.Fatal(err)
	}
	out := map[string][]replay.Pair{}
	for _, p := range w.Compare(time.Now()).Pairs {
		if p.App == "shop" && p.Endpoint == inc.west {
			out[p.Verdict()] = append(out[p.Verdict()], p)
		} else if p.Verdict() != "same" && p.Verdict() != "gone" {
			out["other "+p.Verdict()] = append(out["other "+p.Verdict()], p)
		}
	}
	return out
}

func TestWhatIfOverARecordedIncident(t *testing.T) {
	inc := recordIncident(t)
	recorded := 0
	for _, e := range inc.raw[events.StreamState] {
		if to, ok := events.TransitionStatus(e.Type); ok && to != "" && strings.HasPrefix(e.Type, "detour.endpoint.") {
			recorded++
		}
	}

	t.Run("the configured settings re-decide exactly the recorded transitions", func(t *testing.T) {
		s, _ := replay.ParseSettings("fall=3,rise=2")
		w := replay.NewWhatIf(inc.cfg, s, time.Time{}, time.Time{})
		if err := replay.Read(context.Background(), inc.js, replay.Window{}, w.Add); err != nil {
			t.Fatal(err)
		}
		c := w.Compare(time.Now())
		if len(c.Pairs) != recorded {
			t.Errorf("%d pairs, want the %d recorded endpoint transitions", len(c.Pairs), recorded)
		}
		for _, p := range c.Pairs {
			if p.Recorded == nil || p.WhatIf == nil || !p.Recorded.At.Equal(p.WhatIf.At) || p.Recorded.Cause != p.WhatIf.Cause ||
				p.Recorded.From != p.WhatIf.From || p.Recorded.Reason != p.WhatIf.Reason {
				t.Errorf("%s/%s/%s → %s: recorded %+v, what-if %+v", p.App, p.Pool, p.Endpoint, p.To, p.Recorded, p.WhatIf)
			}
		}
	})
	t.Run("a fall longer than the outage takes the transition away", func(t *testing.T) {
		v := verdicts(t, inc, "fall=1000")
		if len(v["gone"]) != 2 || v["gone"][0].To != "down" || v["gone"][1].To != "up" || len(v["new"]) != 0 {
			t.Errorf("with fall=1000 the west endpoint's down and up should not happen: %+v", v)
		}
	})
	t.Run("a smaller fall takes the endpoint down earlier", func(t *testing.T) {
		v := verdicts(t, inc, "fall=1")
		if len(v["earlier"]) != 1 || v["earlier"][0].To != "down" || v["earlier"][0].Shift.D() > -200*time.Millisecond {
			t.Errorf("with fall=1 the west endpoint should go down about 2 intervals earlier: %+v", v)
		}
	})
	t.Run("the what-if shows side by side in every format", func(t *testing.T) {
		s, _ := replay.ParseSettings("fall=1000")
		for _, format := range replay.Formats {
			var out bytes.Buffer
			if err := replay.Run(context.Background(), inc.js, replay.Options{Config: inc.cfg, WhatIf: &s, Format: format}, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "would not happen") && !strings.Contains(out.String(), `"verdict":"gone"`) {
				t.Errorf("%s what-if does not say the transition would not happen:\n%s", format, out.String())
			}
		}
	})
}

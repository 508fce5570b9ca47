package decider

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	detourreplay "github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAVersionArrivingWhileAnOverrideIsHeldKeepsTheOrderTheStreamsStoredThem: w1 fails, then
// passes (heard on the wire, PROBES late), the operator forces it down, and a version adding w2
// is applied, each stored after the one before. The decider holds the override behind the pass
// it heard first, and takes the version while it holds it; PROBES then delivers the pass. As the
// streams stored them, and as detour replay re-decides them, the pass brought w1 up, the
// override took it down again, and the version came after both: the decider records the same.
func TestAVersionArrivingWhileAnOverrideIsHeldKeepsTheOrderTheStreamsStoredThem(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	cfg, v1, err := config.Apply(ctx, srv.JS, "v1.yaml", []byte(w1YAML("")), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	probes, state := srv.Stream(t, events.StreamProbes), srv.Stream(t, events.StreamState)
	d := handDriven(Options{Config: cfg, Name: "decider/a", Log: log, Now: time.Now, Stats: &Stats{}}, srv.JS)
	d.log, d.state = log, state
	subject := events.ProbeSubject("eu", "shop", "west", "w1")
	// publish stores e on subject and returns its delivery, as the stream gives it back.
	publish := func(st jetstream.Stream, subject string, e events.Envelope) delivery {
		t.Helper()
		ack, err := events.Publish(ctx, srv.JS, subject, e)
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		dl := delivery{subject: subject, id: e.ID, seq: ack.Sequence, stamp: m.Time, data: m.Data, env: e}
		if strings.HasPrefix(subject, "detour.probe.") {
			if dl.results, err = events.DecodeProbes(m.Data); err != nil {
				t.Fatal(err)
			}
		}
		return dl
	}

	d.onProbes(ctx, publish(probes, subject, w1Result(t, "eu-1", time.Now(), false)))
	d.flush(ctx)
	d.settle(ctx)
	pass := publish(probes, subject, w1Result(t, "eu-2", time.Now(), true))
	d.heard(heardMsg{key: msgKey{subject, pass.id}, data: pass.data, at: time.Now()})
	o, err := events.New(events.TypeOverrideSet, "override/alice@box", time.Now(), events.Override{App: "shop", Pool: "west",
		Endpoint: "w1", By: "alice@box", Reason: "deploy", Action: events.ActionForceDown})
	if err != nil {
		t.Fatal(err)
	}
	d.onState(ctx, publish(state, events.OverrideSubject("shop", "west", "w1"), o))
	if _, _, err := config.Apply(ctx, srv.JS, "v2.yaml", []byte(strings.Replace(w1YAML(""), `{name: w1, address: "127.0.0.11:8081"}`,
		`{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.12:8081"}`, 1)), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case c := <-config.Watch(wctx, srv.JS, v1.Number, log, "decider", "decider/a"):
		d.reconfigure(ctx, c)
	case <-time.After(5 * time.Second):
		t.Fatal("the version was not delivered within 5s")
	}
	d.onProbes(ctx, pass)
	d.flush(ctx)
	d.settle(ctx)

	if diffs := replayDiffs(t, srv, cfg); len(diffs) > 0 {
		t.Errorf("detour replay differs from STATE on %d transitions:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// ReplayLine is one line of `detour replay --format json`.
type ReplayLine struct {
	Kind    string `json:"kind"`
	Verdict string `json:"verdict"`
	detourreplay.Pair
	Shift float64 `json:"shift_ms"` // Millis writes JSON, it does not read it
}

// Replay runs `detour replay --what-if quorum=0.5 --format json` over srv's streams with cfg,
// following the configuration versions CONFIG stored when versions is set, and returns its
// lines and its output. It is exported for the decider_test files.
func Replay(t *testing.T, srv *eventstest.Server, cfg *config.Config, versions bool) ([]ReplayLine, string) {
	t.Helper()
	s, err := detourreplay.ParseSettings("quorum=0.5")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := detourreplay.Run(context.Background(), srv.JS, detourreplay.Options{Config: cfg, WhatIf: &s, Versions: versions, Format: "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var lines []ReplayLine
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var p ReplayLine
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, p)
	}
	return lines, out.String()
}

// replayDiffs replays the streams, following the configuration versions CONFIG stored, with the
// thresholds the configuration has (Replay), and lists the endpoint transitions where the
// replay and STATE differ.
func replayDiffs(t *testing.T, srv *eventstest.Server, cfg *config.Config) []string {
	t.Helper()
	lines, _ := Replay(t, srv, cfg, true)
	var diffs []string
	for _, p := range lines {
		if p.Kind != "what_if" || p.Verdict == "same" && p.Recorded.Cause == p.WhatIf.Cause && p.Recorded.Reason == p.WhatIf.Reason {
			continue
		}
		change := func(c *detourreplay.Change) string {
			if c == nil {
				return "-"
			}
			return string(c.From) + "→" + string(c.To) + " at " + c.At.Format(time.RFC3339Nano) + " cause " + c.Cause + ": " + c.Reason
		}
		diffs = append(diffs, p.Endpoint+" "+p.To+": "+p.Verdict+"\n    recorded "+change(p.Recorded)+"\n    replayed "+change(p.WhatIf))
	}
	return diffs
}

//go:build replaydiff

// The differential run of the live deciders against their replay (go tool task
// test:replay-differential) is kept out of the suite CI runs: its deciders check every 40 ms, and
// on a loaded machine a decider that falls behind by more than stale_after judges a region stale
// that the replay, timed by the streams, does not (or counts an override's votes before a result
// it had not read yet), in about one run in four on 2 busy cores.

package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
	"github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// flapRun is one generated incident: what the live deciders go through while it is recorded.
type flapRun struct {
	seed     uint64
	steps    int
	replicas int
	// configs are later configuration documents, applied before the step that is their key.
	configs map[int]string
	// overrides has an operator set and clear overrides now and then.
	overrides bool
}

// flap records a generated incident on live deciders, replays it with the what-if thresholds
// the configuration already has, and returns every transition where the replay and STATE differ.
// It skips the test when a decider had to fold results as heard on the wire.
func flap(t *testing.T, run flapRun) []string {
	t.Helper()
	srv := eventstest.Start(t)
	ctx := context.Background()
	if _, _, err := config.Apply(ctx, srv.JS, "v1.yaml", []byte(flapYAML), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	// A replica takes each version as `detour decider` does, through config.Watch, and says so
	// on took once its loop has it: a version decides from when the deciders take it, which the
	// replay dates by when CONFIG stored it, so the run waits for them before going on.
	type replica struct {
		took  chan uint64
		stats *decider.Stats
	}
	startReplica := func(name string) replica {
		cfg, err := config.Latest(ctx, srv.JS)
		if err != nil {
			t.Fatal(err)
		}
		active, err := config.Active(ctx, srv.JS)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		watch, configs, took := config.Watch(wctx, srv.JS, active.Number, log, "decider", name), make(chan *config.Config), make(chan uint64, 8)
		go func() {
			for {
				select {
				case c := <-watch:
					select {
					case configs <- c:
						took <- c.Version
					case <-wctx.Done():
						return
					}
				case <-wctx.Done():
					return
				}
			}
		}()
		o := decider.Options{JS: srv.JS, Config: cfg, Name: name, Log: log.With().Str("replica", name).Logger(), Stats: &decider.Stats{},
			Configs: configs}
		eventstest.Run(t, "decider "+name, func(ctx context.Context) error { return decider.Run(ctx, o) })
		t.Cleanup(cancel)
		eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "decider %s did not go live", name)
		return replica{took: took, stats: o.Stats}
	}
	replicas := make([]replica, run.replicas)
	for i := range replicas {
		replicas[i] = startReplica(fmt.Sprintf("d%d", i+1))
	}

	rng := rand.New(rand.NewPCG(run.seed, 7))
	regions := []string{"a", "b", "c"}
	// w3 is in no version but the one that adds it: the deciders skip its results until then.
	endpoints := [][2]string{{"west", "w1"}, {"west", "w2"}, {"east", "e1"}, {"west", "w3"}}
	healthy := map[string]bool{}
	silentFor := map[string]int{}
	n := 0
	var last uint64
	for step := 1; step <= run.steps; step++ {
		if doc, ok := run.configs[step]; ok {
			_, v, err := config.Apply(ctx, srv.JS, fmt.Sprintf("v%d.yaml", step), []byte(doc), config.ApplyOptions{By: "test"})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range replicas {
				select {
				case got := <-r.took:
					if got != v.Number {
						t.Fatalf("a replica took version %d, want %d", got, v.Number)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("a replica did not take version %d within 5s", v.Number)
				}
			}
		}
		type send struct {
			region, pool, endpoint string
			ok                     bool
		}
		var sends []send
		for _, r := range regions {
			if silentFor[r] > 0 {
				silentFor[r]--
				continue
			}
			if rng.IntN(25) == 0 {
				silentFor[r] = 3 + rng.IntN(5) // silent for longer than stale_after
			}
			for _, ep := range endpoints {
				k := r + "/" + ep[1]
				if rng.IntN(5) == 0 {
					healthy[k] = !healthy[k]
				}
				sends = append(sends, send{r, ep[0], ep[1], healthy[k]})
			}
		}
		// Now and then an operator overrides an endpoint or a whole pool, or clears it.
		if run.overrides && rng.IntN(8) == 0 {
			// A decider reads STATE and PROBES with two consumers and may apply an override
			// before a result stored just before it (see the README): the operator acts once
			// the deciders have folded the results published so far.
			for _, r := range replicas {
				eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() >= uint64(n) },
					"a replica to fold the %d results published", n)
			}
			ep := endpoints[rng.IntN(3)]
			o := events.Override{App: "shop", Pool: ep[0], By: "alice@box", Reason: fmt.Sprintf("step %d", step)}
			if rng.IntN(3) > 0 {
				o.Endpoint = ep[1]
			}
			var err error
			if action := []string{"", events.ActionForceUp, events.ActionForceDown, events.ActionDrain}[rng.IntN(4)]; action == "" {
				if err = override.Clear(ctx, srv.JS, o); errors.Is(err, override.ErrNoOverride) {
					err = nil
				}
			} else {
				o.Action = action
				err = override.Set(ctx, srv.JS, o)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// Regions publish in no set order.
		rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
		for _, s := range sends {
			n++
			res := events.ProbeResult{ID: fmt.Sprintf("%s-%d", s.region, n), At: time.Now(), App: "shop", Pool: s.pool,
				Endpoint: s.endpoint, Region: s.region, Prober: "p-" + s.region, Check: "http", OK: s.ok}
			e, err := events.New(events.TypeProbeCompleted, "prober/"+s.region, res.At, res)
			if err != nil {
				t.Fatal(err)
			}
			ack, err := events.Publish(ctx, srv.JS, events.ProbeSubject(s.region, "shop", s.pool, s.endpoint), e)
			if err != nil {
				t.Fatal(err)
			}
			last = ack.Sequence
		}
		time.Sleep(40 * time.Millisecond) // the check interval passes: the incident is made of time
	}
	probes, err := srv.JS.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	m, err := probes.GetMsg(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	end := m.Time

	// The deciders fold the last results and tick past their deadlines within moments; until
	// then the replay may show transitions STATE does not hold yet.
	var diffs []string
	deadline := time.Now().Add(3 * time.Second)
	for {
		diffs = compare(t, srv.JS, end)
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A result PROBES did not deliver within 300 ms (a loaded machine) was folded as heard on the
	// wire and timed then: the exception the README names, which a replay of PROBES does not
	// give back.
	for _, r := range replicas {
		if heard := r.stats.Heard.Load(); heard > 0 && len(diffs) > 0 {
			t.Skipf("%d results were folded as heard on the wire, PROBES having not delivered them in time; the replay differs on:\n%s",
				heard, strings.Join(diffs, "\n"))
		}
	}
	return diffs
}

// compare replays the streams up to end with the what-if thresholds the configuration has, as a
// user would with `detour replay --to END --what-if quorum=0.5 --format json`, and lists the
// pairs that are not the same transition at the same time, for the same cause and reason.
func compare(t *testing.T, js jetstream.JetStream, end time.Time) []string {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Latest(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	s, err := replay.ParseSettings("quorum=0.5")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := replay.Run(ctx, js, replay.Options{Filter: replay.Filter{To: end}, Config: cfg, WhatIf: &s, Versions: true, Format: "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var diffs []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var p struct {
			Kind    string `json:"kind"`
			Verdict string `json:"verdict"`
			replay.Pair
			Shift float64 `json:"shift_ms"` // Millis writes JSON, it does not read it

		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if p.Kind != "what_if" {
			continue
		}
		if p.Verdict == "same" && p.Recorded.Cause == p.WhatIf.Cause && p.Recorded.From == p.WhatIf.From &&
			p.Recorded.Reason == p.WhatIf.Reason {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s/%s/%s %s: %s\n    recorded %s\n    replayed %s", p.App, p.Pool, p.Endpoint, p.To, p.Verdict,
			change(p.Recorded, end), change(p.WhatIf, end)))
	}
	return diffs
}

func change(c *replay.Change, end time.Time) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%s→%s at end%s cause %s: %s", c.From, c.To, c.At.Sub(end).Round(time.Millisecond), c.Cause, c.Reason)
}

func TestReplayingTheLiveThresholdsGivesBackWhatTheDecidersRecorded(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  flapRun
	}{
		{"one replica", flapRun{steps: 60, replicas: 1}},
		{"two replicas", flapRun{steps: 60, replicas: 2}},
		{"overrides set and cleared", flapRun{steps: 60, replicas: 2, overrides: true}},
		{"a version changes the thresholds", flapRun{steps: 60, replicas: 1, configs: map[int]string{
			30: strings.Replace(strings.Replace(flapYAML, "fall: 2, rise: 2", "fall: 3, rise: 1", 1), "hold_down: 90ms", "hold_down: 50ms", 1)}}},
		{"versions add and remove endpoints", flapRun{steps: 60, replicas: 2, configs: map[int]string{
			20: strings.Replace(flapYAML, `{name: w2, address: "127.0.0.12:8081"}`, `{name: w3, address: "127.0.0.14:8081"}`, 1),
			40: strings.Replace(flapYAML, `{name: w2, address: "127.0.0.12:8081"}`, `{name: w2, address: "127.0.0.15:8081"}`, 1)}}},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s seed %d", tc.name, seed), func(t *testing.T) {
				run := tc.run
				run.seed = seed
				if diffs := flap(t, run); len(diffs) > 0 {
					t.Errorf("the replay differs from STATE on %d transitions:\n%s", len(diffs), strings.Join(diffs, "\n"))
				}
			})
		}
	}
}

package decider

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAnOverrideHeldBehindResultsWaitsForThemInEveryInterleaving drives the decider's loop by
// hand through random interleavings of w1's passes heard on the wire (some twice, some never),
// delivered by PROBES in order (some twice, the rest never: its leader died), a force down and
// its clearing STATE delivers (each stored among the passes), and ticks, some with PROBES
// deliveries queued. In every one the decider runs on; each override is applied only once the
// passes stored before it and heard before it came are folded, and at most wireGrace after it
// came; every pass heard is folded, none twice.
func TestAnOverrideHeldBehindResultsWaitsForThemInEveryInterleaving(t *testing.T) {
	cfg := w1Config(t, "")
	srv := eventstest.Start(t)
	state := srv.Stream(t, events.StreamState)
	base := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	subject := events.ProbeSubject("eu", "shop", "west", "w1")
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(8)
		passes := make([][]byte, n)
		ids := make([]string, n)
		for i := range passes {
			ids[i] = fmt.Sprintf("eu-%d", i)
			at := base.Add(time.Duration(i) * 10 * time.Millisecond)
			passes[i] = w1Pass(t, ids[i], at).Encode()
		}
		// The steps: h hears the next pass on the wire (H again, x loses it), p has PROBES deliver
		// the next one (P its last again), o has STATE deliver the override, t ticks (q with
		// PROBES deliveries queued).
		var steps []byte
		for range n {
			switch r := rng.IntN(10); {
			case r < 7:
				steps = append(steps, 'h')
			case r < 8:
				steps = append(steps, 'h', 'H') // heard twice
			default:
				steps = append(steps, 'x') // lost on the wire
			}
		}
		delivered := rng.IntN(n + 1)
		// The force down and its clearing are stored after this many passes.
		stored := [2]int{rng.IntN(n + 1), 0}
		stored[1] = stored[0] + rng.IntN(n+1-stored[0])
		for range delivered {
			steps = append(steps, 'p')
		}
		steps = append(steps, 'o', 'o')
		for range rng.IntN(6) {
			steps = append(steps, 't', byte("tq"[rng.IntN(2)]))
		}
		if rng.IntN(4) == 0 {
			steps = append(steps, 'P') // PROBES redelivers its last
		}
		// The wire and PROBES each keep publish order: a step takes the next pass of its kind.
		rng.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })

		local := base
		o := Options{Config: cfg, Name: "decider/a", Now: func() time.Time { return local }, Stats: &Stats{}}
		d := handDriven(o, srv.JS)
		d.state = state
		w1 := d.ix.bySubject[events.EndpointStateSubject("shop", "west", "w1")]
		ctx := context.Background()
		heardSet := map[int]bool{}
		wire, probes := 0, 0 // the next pass the wire hears, PROBES delivers
		var overrideAt [2]time.Time
		var before [2]int // the passes stored before each override and heard before it came
		overrides := 0    // delivered by STATE
		run := func(step byte) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("seed %d, steps %q: step %c panicked: %v", seed, steps, step, r)
				}
			}()
			switch step {
			case 'h', 'x':
				if wire >= n {
					return
				}
				if step == 'h' {
					d.heard(heardMsg{key: msgKey{subject, ids[wire]}, data: passes[wire], at: local})
					heardSet[wire] = true
				}
				wire++
			case 'H':
				if wire > 0 && heardSet[wire-1] {
					d.heard(heardMsg{key: msgKey{subject, ids[wire-1]}, data: passes[wire-1], at: local})
				}
			case 'p', 'P':
				i := probes
				if step == 'P' {
					if probes == 0 {
						return
					}
					i = probes - 1
				} else if probes >= delivered {
					return
				}
				rs, err := events.DecodeProbes(passes[i])
				if err != nil {
					t.Fatal(err)
				}
				d.onProbes(ctx, delivery{subject: subject, id: ids[i], seq: uint64(i + 2), stamp: base.Add(time.Duration(i) * 10 * time.Millisecond), results: rs})
				if step == 'p' {
					probes++
				}
			case 'o':
				k := overrides
				typ, action := events.TypeOverrideSet, events.ActionForceDown
				if k == 1 {
					typ, action = events.TypeOverrideCleared, ""
				}
				e, err := events.New(typ, "alice@box", local, events.Override{App: "shop", Pool: "west", Endpoint: "w1",
					By: "alice@box", Reason: "region outage", Action: action})
				if err != nil {
					t.Fatal(err)
				}
				overrideAt[k] = local
				for i := range heardSet {
					if i < stored[k] {
						before[k]++
					}
				}
				overrides++
				d.onState(ctx, delivery{subject: events.OverrideSubject("shop", "west", "w1"), seq: uint64(k + 1),
					stamp: base.Add(time.Duration(stored[k])*10*time.Millisecond - 5*time.Millisecond + time.Duration(k)), env: e})
			case 't', 'q':
				local = local.Add(time.Duration(rng.IntN(4)) * 100 * time.Millisecond)
				queued := 0
				if step == 'q' {
					queued = 1
				}
				d.onTick(ctx, local, queued)
			}
		}
		for _, step := range steps {
			run(step)
			for k := range overrides {
				if w1.overrideSeq > uint64(k) && d.o.Stats.Results.Load() < uint64(before[k]) {
					t.Fatalf("seed %d, steps %q: override %d was applied after %d results folded, before the %d heard ahead of it",
						seed, steps, k+1, d.o.Stats.Results.Load(), before[k])
				}
				if w1.overrideSeq <= uint64(k) && step == 't' && local.Sub(overrideAt[k]) >= wireGrace {
					t.Fatalf("seed %d, steps %q: override %d is still held %s after it came", seed, steps, k+1, local.Sub(overrideAt[k]))
				}
			}
		}
		local = local.Add(time.Second)
		run('t')
		folded := d.o.Stats.Results.Load()
		union := probes
		for i := range heardSet {
			if i >= probes {
				union++
			}
		}
		if w1.overrideSeq != 2 || w1.st.Own != nil || len(d.held) != 0 || len(d.waiting) != 0 || len(d.waitOrder) != 0 {
			t.Fatalf("seed %d, steps %q: %d overrides applied (in force %v), %d held, %d waiting (%d in the wait order); want both, none left",
				seed, steps, w1.overrideSeq, w1.st.Own != nil, len(d.held), len(d.waiting), len(d.waitOrder))
		}
		if folded < uint64(len(heardSet)) || folded > uint64(union) {
			t.Fatalf("seed %d, steps %q: %d results folded; %d heard, %d delivered by PROBES", seed, steps, folded, len(heardSet), probes)
		}
	}
}

package replay

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func TestParseSettingsNamesTheFieldAndTheProblem(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"fall=5,rise=3,quorum=0.67,hold_down=30s,stale_after=10s", ""},
		{"fall=0", `fall: "0": want 1 to 1000`},
		{"quorum=1.5", `quorum: "1.5": want a share in (0, 1]`},
		{"quorum=NaN", `quorum: "NaN": want a share in (0, 1]`},
		{"hold_down=-1s", `hold_down: "-1s": want a duration of 0 or more`},
		{"stale_after=0s", `stale_after: "0s": want a positive duration`},
		{"hold_down=soon", `hold_down: "soon": time: invalid duration "soon"`},
		{"hold_down=2000000h,stale_after=2000000h", `hold_down: "2000000h": want at most 720h0m0s, as in the configuration`},
		{"stale_after=721h", `stale_after: "721h": want at most 720h0m0s, as in the configuration`},
		{"fall", `"fall": want key=value`},
		{"interval=1s", `unknown setting "interval": want fall, rise, quorum, hold_down or stale_after`},
		{"fall=2,fall=3", `fall given twice`},
		{"", `no setting given: want e.g. fall=5,rise=3`},
	} {
		s, err := ParseSettings(tc.in)
		got := ""
		if err != nil {
			got = err.Error()
		} else if s.String() != tc.in {
			t.Errorf("ParseSettings(%q).String() = %q", tc.in, s.String())
		}
		if got != tc.want {
			t.Errorf("ParseSettings(%q) error %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add("fall=5,rise=3,quorum=0.67,hold_down=30s,stale_after=10s")
	f.Add("fall=1,,quorum=1")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSettings(in)
		if err != nil {
			return
		}
		again, err := ParseSettings(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("%q read as %q, which reads back as %q (%v)", in, s.String(), again.String(), err)
		}
	})
}

func TestAlignPairsTransitionsInOrderAndClosestInTime(t *testing.T) {
	at := func(s string) time.Time { d, _ := time.ParseDuration(s); return time.Unix(0, 0).Add(d) }
	ch := func(to events.Status, when string) Change { return Change{To: to, At: at(when)} }
	down, up := events.StatusDown, events.StatusUp
	for _, tc := range []struct {
		name     string
		rec, sim []Change
		want     string
	}{
		{"identical runs pair one to one", []Change{ch(down, "1s"), ch(up, "3s")}, []Change{ch(down, "1s"), ch(up, "3s")}, "same same"},
		{"a later what-if", []Change{ch(down, "1s")}, []Change{ch(down, "2s")}, "later"},
		{"an outage the what-if rides through", []Change{ch(up, "0s"), ch(down, "1s"), ch(up, "3s")}, []Change{ch(up, "0s")}, "same gone gone"},
		{"a flap only the what-if sees", []Change{ch(up, "0s")}, []Change{ch(up, "0s"), ch(down, "5s"), ch(up, "6s")}, "same new new"},
		{"the closer of two candidates is paired", []Change{ch(down, "10s")}, []Change{ch(down, "1s"), ch(up, "2s"), ch(down, "9s")}, "new new earlier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			for i, p := range align(tc.rec, tc.sim) {
				if i > 0 {
					got += " "
				}
				got += p.Verdict()
			}
			if got != tc.want {
				t.Errorf("verdicts %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAlignHoldsLittleMemoryForAnEndpointThatFlappedThousandsOfTimes: a day's window over an
// endpoint flapping every 20 s has 4,000 recorded transitions and as many re-decided; pairing them
// held a cell for every pair of the two (16 bytes × 4,001², 256 MB for this endpoint alone, and
// gigabytes for longer windows), where a row at a time is enough.
func TestAlignHoldsLittleMemoryForAnEndpointThatFlappedThousandsOfTimes(t *testing.T) {
	var rec, sim []Change
	for i := range 4000 {
		to := events.StatusDown
		if i%2 == 1 {
			to = events.StatusUp
		}
		at := time.Unix(0, 0).Add(time.Duration(i) * 20 * time.Second)
		rec = append(rec, Change{To: to, At: at})
		sim = append(sim, Change{To: to, At: at.Add(time.Second)})
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	pairs := align(rec, sim)
	runtime.ReadMemStats(&after)
	if len(pairs) != 4000 || pairs[0].Verdict() != "later" || pairs[3999].Shift.D() != time.Second {
		t.Fatalf("%d pairs, first %s, last shifted %s; want 4000, each 1s later", len(pairs), pairs[0].Verdict(), pairs[3999].Shift.D())
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("pairing 4,000 transitions with 4,000 allocated %d MB, want at most 32", got>>20)
	}
}

// TestAlignFindsABestAlignmentOfRandomSequences: on random sequences, align pairs equal target
// statuses in order, lists every transition once, and makes as many pairs, as close in time, as
// the best alignment (scored over the whole table).
func TestAlignFindsABestAlignmentOfRandomSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []events.Status{events.StatusUp, events.StatusDown, events.StatusDrained}
	gen := func() []Change {
		var out []Change
		at := time.Unix(0, 0)
		for range rng.IntN(12) {
			at = at.Add(time.Duration(rng.IntN(5)) * time.Second)
			out = append(out, Change{To: statuses[rng.IntN(3)], At: at})
		}
		return out
	}
	for range 2000 {
		rec, sim := gen(), gen()
		var got cell
		i, j := 0, 0
		for _, p := range align(rec, sim) {
			switch {
			case p.Recorded != nil && p.WhatIf != nil:
				if p.Recorded != &rec[i] || p.WhatIf != &sim[j] || p.Recorded.To != p.WhatIf.To {
					t.Fatalf("rec %v sim %v: pair out of order or of unequal statuses", rec, sim)
				}
				got = got.plus(cell{1, absDuration(p.WhatIf.At.Sub(p.Recorded.At))})
				i, j = i+1, j+1
			case p.Recorded != nil:
				if p.Recorded != &rec[i] {
					t.Fatalf("rec %v sim %v: recorded transition out of order", rec, sim)
				}
				i++
			default:
				if p.WhatIf != &sim[j] {
					t.Fatalf("rec %v sim %v: what-if transition out of order", rec, sim)
				}
				j++
			}
		}
		if want := prefixScores(rec, sim)[len(sim)]; i != len(rec) || j != len(sim) || got != want {
			t.Fatalf("rec %v sim %v: %d pairs %s apart in all, want %d pairs %s apart", rec, sim, got.matches, got.cost, want.matches, want.cost)
		}
	}
}

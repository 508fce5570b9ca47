package replay

import (
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

package decide

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// TestADrillsFailureOutlivedByTheProbesIsRestatedAsTheirs: each step is a result of region a
// ('+' or '-'), the drill's failure put on ('drill') or lifted ('lift'), or an operator's
// force-down ('down'); want lists the decisions made, as from>to ("" unknown) and whose (drill,
// probes, operator): a status a drill made is re-stated once something else keeps it.
func TestADrillsFailureOutlivedByTheProbesIsRestatedAsTheirs(t *testing.T) {
	tests := []struct {
		name, steps string
		want        []string
	}{
		{"the probes failing during the drill restate its down when it ends",
			"+ + drill - - - lift", []string{">up probes", "up>down drill", "down>down probes"}},
		{"an endpoint healthy at the drill's end comes up",
			"+ + drill - - - + + lift", []string{">up probes", "up>down drill", "down>up probes"}},
		{"an endpoint down before the drill gets nothing",
			"- - - drill lift", []string{">down probes"}},
		{"an endpoint the drill never touched gets nothing", "+ + - - -", []string{">up probes", "up>down probes"}},
		{"an operator's force-down taking over from the drill restates it",
			"+ + drill down lift", []string{">up probes", "up>down drill", "down>down operator"}},
		{"a second drill on the endpoint the probes keep down adds nothing", "+ + drill - - - lift drill lift",
			[]string{">up probes", "up>down drill", "down>down probes"}},
		{"the probes failing after a drill that ended before any result restate its down",
			"drill lift - - -", []string{">down drill", "down>down probes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			var e Endpoint
			var got []string
			for i, step := range strings.Fields(tc.steps) {
				at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
				var d Decision
				var ok bool
				switch step {
				case "drill":
					d, ok = e.SetDrill(&events.Override{Action: events.ActionForceDown, Reason: "drill d1: simulated failure of pool shop/west", By: "drill/d1"}, "d1", at, p)
				case "lift":
					d, ok = e.SetDrill(nil, "d1-rolled-back", at, p)
				case "down":
					d, ok = e.SetOverride(ScopeEndpoint, events.Override{Action: events.ActionForceDown, By: "alice", Reason: "deploy"}, "o1", at, p)
				default:
					d, ok = e.Observe(Result{ID: step + string(rune('0'+i)), Region: "a", At: at, OK: step == "+"}, p)
				}
				if !ok {
					continue
				}
				whose := "probes"
				switch {
				case d.Drill != nil:
					whose = "drill"
				case strings.HasPrefix(d.Reason, "override"):
					whose = "operator"
				}
				got = append(got, string(d.From)+">"+string(d.To)+" "+whose)
				if d.From == d.To && whose == "probes" && d.Reason != DrillOutlived+": a: 3 consecutive failures; 0 of 1 voting regions see it up (quorum 0.5)" {
					t.Errorf("restatement's reason is %q", d.Reason)
				}
			}
			if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
				t.Errorf("decisions %q, want %q", got, tc.want)
			}
		})
	}
}

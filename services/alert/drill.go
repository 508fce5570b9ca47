package alert

import (
	"fmt"
	"slices"
	"strings"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// DrillResult is how a drill ended, as a drill_result alert tells it.
type DrillResult struct {
	ID   string   `json:"id"`
	Name string   `json:"name,omitempty"`
	Apps []string `json:"apps,omitempty"`
	// Pass is true when every step switched within its rto.
	Pass  bool         `json:"pass"`
	Steps []StepResult `json:"steps"`
	// RolledBack is why and by whom the drill rolled back: "completed by ops".
	RolledBack string `json:"rolled_back,omitempty"`
	// Scored is false when the drill rolled back without a scorecard (its runner was lost).
	Scored bool `json:"scored"`
}

// StepResult is one step's verdict.
type StepResult struct {
	Step   string `json:"step"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason,omitempty"`
}

// scorecard is the part of a drill's scorecard (services/drill.Scorecard, whose durations do
// not decode) that a drill_result tells.
type scorecard struct {
	Name       string `json:"name"`
	RolledBack string `json:"rolled_back"`
	Pass       bool   `json:"pass"`
	Steps      []struct {
		Step   string `json:"step"`
		Pass   bool   `json:"pass"`
		Reason string `json:"reason"`
	} `json:"steps"`
}

// drills tracks the drills seen starting on DRILLS, for the apps each one touches; a drill told
// at its rollback for a lost runner is kept with a zero start until its scorecard, if any.
type drills map[string]events.DrillStarted

// Classify folds a DRILLS event into d and returns the drill_result fact when the drill ended:
// its scorecard, or a rollback for a lost runner, which will never score it. ok is false for
// every other event.
func (d drills) Classify(subject string, e events.Envelope) (Fact, bool) {
	tok := events.SplitSubject(subject, "detour.drill")
	if len(tok) != 1 {
		return Fact{}, false
	}
	id := tok[0]
	f := Fact{Kinds: []string{config.AlertDrillResult}, Subject: subject, Event: e}
	switch e.Type {
	case events.TypeDrillStarted:
		var s events.DrillStarted
		if e.Payload(&s) == nil && s.ID == id {
			d[id] = s
		}
		return Fact{}, false
	case events.TypeDrillScored:
		var sc scorecard
		if s, ok := d[id]; ok && s.ID == "" {
			delete(d, id)
			return Fact{}, false // told at its rollback for a lost runner, which was only cut off
		}
		if err := e.Payload(&sc); err != nil {
			return Fact{}, false
		}
		r := &DrillResult{ID: id, Name: sc.Name, Apps: d[id].Apps, Pass: sc.Pass, RolledBack: sc.RolledBack, Scored: true, Steps: []StepResult{}}
		for _, s := range sc.Steps {
			r.Steps = append(r.Steps, StepResult{Step: s.Step, Pass: s.Pass, Reason: s.Reason})
		}
		delete(d, id)
		f.Drill = r
		return f, true
	case events.TypeDrillRolledBack:
		var rb events.DrillRolledBack
		if err := e.Payload(&rb); err != nil || rb.Reason != "runner_lost" {
			return Fact{}, false
		}
		s := d[id]
		d[id] = events.DrillStarted{} // told now: a scorecard its runner may still record is not
		f.Drill = &DrillResult{ID: id, Name: s.Name, Apps: s.Apps, RolledBack: rb.Reason + " by " + rb.By, Steps: []StepResult{}}
		return f, true
	}
	return Fact{}, false
}

// drillText is a drill_result alert's one line: verdict, then every step's.
func drillText(r *DrillResult) string {
	name := r.ID
	if r.Name != "" {
		name = r.Name + " (" + r.ID + ")"
	}
	s := fmt.Sprintf("drill_result: drill %s %s", name, verdict(r.Pass))
	var steps []string
	for _, st := range r.Steps {
		x := st.Step + " " + verdict(st.Pass)
		if !st.Pass && st.Reason != "" {
			x += " (" + st.Reason + ")"
		}
		steps = append(steps, x)
	}
	if len(steps) > 0 {
		s += ": " + strings.Join(steps, "; ")
	}
	if !r.Scored {
		s += "; not scored"
	}
	if r.RolledBack != "" {
		s += "; rolled back: " + r.RolledBack
	}
	return s
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// touches reports whether a group limited to apps is told about the drill.
func (r *DrillResult) touches(apps []string) bool {
	if len(apps) == 0 || len(r.Apps) == 0 {
		return true
	}
	return slices.ContainsFunc(r.Apps, func(a string) bool { return slices.Contains(apps, a) })
}

package alert

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/drill"
)

// Fact is one STATE event as alerts see it.
type Fact struct {
	// Kinds are what the event is: transition, and pool_down, failover or edge_down.
	Kinds      []string
	Subject    string
	Event      events.Envelope
	Transition events.Transition
	// Answer is the app's answer after a failover.
	Answer string
	// Answers are, after an edge's transition that moved the CNAME of apps it fronts (a
	// failover), each of those apps' answer.
	Answers map[string]string
	// Drill is how a drill ended, for drill_result.
	Drill *DrillResult
	// DrillID is the drill whose simulated failure made the transition, or whose end undid it
	// (see drilled), or that killed the edge; empty for the probes', an override's.
	DrillID string
}

// drilled follows which drill made each endpoint's last transition, so that the transitions a
// drill caused are told as its own: the decider marks an endpoint's transition made by a drill's
// simulated failure, and the pool's down it causes, but not the pool's up the drill's end
// causes (nor any pool's transition before pools' were marked), whose reason reads as an
// outage's (a drill's pool_down and failover paged an on-call engineer as real ones).
type drilled struct {
	endpoints map[string]drillMark // by endpoint subject: what its last transition was
	causes    map[string]string    // the drill of each endpoint's last transition, by its event id
}

// drillMark is an endpoint's last transition: its event, and the drill that made it (failed) or
// whose end undid the drill's failure.
type drillMark struct {
	event, drill string
	failed       bool
}

func newDrilled() *drilled {
	return &drilled{endpoints: map[string]drillMark{}, causes: map[string]string{}}
}

// fold folds e, a STATE event on subject, and returns the drill that made it, or "": an
// endpoint's transition a drill's simulated failure made (drill.Of: marked, or worded so before
// the mark), or that lifts the failure of the drill its last transition was (its reason begins
// decide.DrillEnded); a pool's transition marked with the drill (a down), or caused (the
// decider names the endpoint's transition as its cause) by one of those; an edge's a drill's
// simulated failure made (worded so by the controller), the failover of the apps it fronts.
func (d *drilled) fold(subject string, e events.Envelope) string {
	var t events.Transition
	if _, ok := events.TransitionStatus(e.Type); !ok || e.Payload(&t) != nil {
		return ""
	}
	switch {
	case strings.HasPrefix(subject, "detour.state.endpoint."):
		prev := d.endpoints[subject]
		delete(d.causes, prev.event)
		m := drillMark{event: e.ID, drill: drill.Of(t)}
		m.failed = m.drill != ""
		if !m.failed && prev.failed && strings.HasPrefix(t.Reason, decide.DrillEnded) {
			m.drill = prev.drill
		}
		d.endpoints[subject] = m
		if m.drill != "" {
			d.causes[e.ID] = m.drill
		}
		return m.drill
	case strings.HasPrefix(subject, "detour.state.pool.") && t.From == t.To:
		return "" // re-stated once no endpoint's down is a drill's (decide.DrillOutlived)
	case strings.HasPrefix(subject, "detour.state.pool.") && t.Drill != "":
		return t.Drill // marked as its cause was, which may have moved on since
	case strings.HasPrefix(subject, "detour.state.pool.") && e.Cause != "":
		return d.causes[e.Cause]
	case strings.HasPrefix(subject, "detour.state.edge."):
		return drill.Of(t)
	}
	return ""
}

// Classify folds a STATE event into v and says what it is for alerts. ok is false for events
// no alert is about (overrides, and events that change no status, but for a re-statement).
func Classify(c *config.Config, v *state.View, subject string, seq uint64, e events.Envelope) (Fact, bool) {
	to, isTransition := events.TransitionStatus(e.Type)
	var before string
	var app *config.App
	f := Fact{Subject: subject, Event: e}
	if isTransition {
		if err := e.Payload(&f.Transition); err != nil {
			isTransition = false
		}
	}
	if isTransition && f.Transition.App != "" {
		if app = c.App(f.Transition.App); app != nil {
			before = answerText(zone.Decide(c, app, v))
		}
	}
	var fronted map[string]string // an edge's apps, and their answers before its transition
	if isTransition && f.Transition.Edge != "" {
		fronted = map[string]string{}
		for i := range c.Apps {
			if a := &c.Apps[i]; a.PrimaryEdge == f.Transition.Edge || slices.Contains(a.Ingress, f.Transition.Edge) {
				fronted[a.Name] = answerText(zone.Decide(c, a, v))
			}
		}
	}
	prev, known := v.Subject(subject)
	changed, err := v.Apply(subject, seq, e)
	// A transition that re-states the status recorded changes none, but tells that the probes,
	// not a drill, keep it down from now on (decide.DrillOutlived): an outage to tell.
	restated := isTransition && known && (seq == 0 || seq > prev.Seq) && prev.Status == to && f.Transition.From == to
	if err != nil || !isTransition || !changed && !restated {
		return Fact{}, false
	}
	f.Kinds = append(f.Kinds, config.AlertTransition)
	switch {
	case strings.HasPrefix(subject, "detour.state.pool.") && to == events.StatusDown:
		f.Kinds = append(f.Kinds, config.AlertPoolDown)
	case strings.HasPrefix(subject, "detour.state.edge.") && to == events.StatusDown:
		f.Kinds = append(f.Kinds, config.AlertEdgeDown)
	}
	if app != nil {
		if after := answerText(zone.Decide(c, app, v)); after != before {
			f.Kinds, f.Answer = append(f.Kinds, config.AlertFailover), after
		}
	}
	for name, before := range fronted {
		if after := answerText(zone.Decide(c, c.App(name), v)); after != before {
			if f.Answers == nil {
				f.Kinds, f.Answers = append(f.Kinds, config.AlertFailover), map[string]string{}
			}
			f.Answers[name] = after
		}
	}
	return f, true
}

// answersTold bounds the apps whose new answers the text of an edge's failover names (its json
// delivery's answers holds them all): each attempt is recorded on ALERTS with its text, in at
// most events.MaxAlertMessage, and an edge fronting thousands of apps outgrew it, so that its
// attempts went unrecorded and were made again by another controller, or after a restart.
const answersTold = 10

// toldTo is f as group a is told it: an edge's failover names the new answers of a's apps
// alone when a is limited to apps.
func (f Fact) toldTo(a *config.Alert) Fact {
	if f.Answers == nil || len(a.Apps) == 0 {
		return f
	}
	answers := map[string]string{}
	for _, app := range a.Apps {
		if answer, ok := f.Answers[app]; ok {
			answers[app] = answer
		}
	}
	f.Answers = answers
	return f
}

// Matches returns the most specific kind of f the group a is told about, or "". An edge's
// failover is one of a group limited to apps only when it moved one of theirs.
func Matches(a *config.Alert, f Fact) string {
	if f.Drill != nil && !f.Drill.touches(a.Apps) {
		return ""
	}
	if len(a.Apps) > 0 && f.Transition.App != "" && !slices.Contains(a.Apps, f.Transition.App) {
		return ""
	}
	moved := len(a.Apps) == 0
	for _, app := range a.Apps {
		_, ok := f.Answers[app]
		moved = moved || ok
	}
	for i := len(f.Kinds) - 1; i >= 0; i-- {
		if f.Kinds[i] == config.AlertFailover && f.Answers != nil && !moved {
			continue
		}
		if slices.Contains(a.On, f.Kinds[i]) {
			return f.Kinds[i]
		}
	}
	return ""
}

// Text is the alert's one line for a person.
func Text(kind string, f Fact) string {
	if f.Drill != nil {
		return drillText(f.Drill)
	}
	t := f.Transition
	what := strings.Join(nonEmpty(t.App, t.Pool, t.Endpoint), "/")
	if t.Edge != "" {
		what = "edge " + t.Edge
	}
	s := fmt.Sprintf("%s: %s %s → %s", kind, what, statusText(t.From), statusText(t.To))
	if f.DrillID != "" {
		s = "[drill " + f.DrillID + "] " + s
	}
	if f.Answer != "" && kind == config.AlertFailover {
		s += "; " + t.App + " now answers " + f.Answer
	}
	if kind == config.AlertFailover {
		apps := slices.Sorted(maps.Keys(f.Answers))
		for _, app := range apps[:min(len(apps), answersTold)] {
			s += "; " + app + " now answers " + f.Answers[app]
		}
		if n := len(apps) - answersTold; n > 0 {
			s += fmt.Sprintf("; and %d more apps moved", n)
		}
	}
	if t.Reason != "" {
		s += " (" + t.Reason + ")"
	}
	return s
}

func answerText(a zone.AppAnswer) string {
	if a.CNAME != "" {
		return strings.TrimSuffix(a.CNAME, ".")
	}
	var out []string
	for _, ip := range append(a.V4.Addresses(), a.V6.Addresses()...) {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, " ")
}

func statusText(s events.Status) string {
	if s == events.StatusUnknown {
		return "unknown"
	}
	return string(s)
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

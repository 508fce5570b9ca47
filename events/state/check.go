package state

import (
	"fmt"
	"strings"

	"github.com/detourdev/detour/events"
)

// Check returns why the STATE event e on subject does not fit what was recorded there before
// it — a forged event, or one from a writer that does not share the followers' history — or ""
// when it fits. It fits when its type belongs to the subject's kind (endpoint, pool, edge,
// override), a transition's payload names the subject's endpoint, pool or edge, and its from is
// prev, the status last recorded on subject (not checked when hasPrev is false: nothing was).
func Check(subject string, prev events.Status, hasPrev bool, e events.Envelope) string {
	kind, tokens := subjectKind(subject)
	want := map[string][]string{
		"endpoint": {events.TypeEndpointUp, events.TypeEndpointDown, events.TypeEndpointDrained},
		"pool":     {events.TypePoolUp, events.TypePoolDown},
		"edge":     {events.TypeEdgeUp, events.TypeEdgeDown},
		"override": {events.TypeOverrideSet, events.TypeOverrideCleared},
	}[kind]
	if want == nil {
		return fmt.Sprintf("subject %s is no STATE aggregate", subject)
	}
	ok := false
	for _, t := range want {
		ok = ok || e.Type == t
	}
	if !ok {
		return fmt.Sprintf("type %s does not belong on %s subjects", e.Type, kind)
	}
	if kind == "override" {
		return ""
	}
	var t events.Transition
	if err := e.Payload(&t); err != nil {
		return fmt.Sprintf("payload: %v", err)
	}
	var named []string
	switch kind {
	case "endpoint":
		named = []string{t.App, t.Pool, t.Endpoint}
	case "pool":
		named = []string{t.App, t.Pool}
	case "edge":
		named = []string{t.Edge}
	}
	if strings.Join(named, ".") != strings.Join(tokens, ".") {
		return fmt.Sprintf("payload names %s, not the subject's %s", strings.Join(named, "."), strings.Join(tokens, "."))
	}
	if to, _ := events.TransitionStatus(e.Type); t.To != to {
		return fmt.Sprintf("payload goes to %s but the type says %s", t.To, to)
	}
	if hasPrev && t.From != prev {
		return fmt.Sprintf("from %s, but STATE last recorded %s", t.From, prev)
	}
	return ""
}

// Unexpected is Check of the event stored at seq against what the view last recorded on
// subject before it; an event the view has applied already is not checked again.
func (v *View) Unexpected(subject string, seq uint64, e events.Envelope) string {
	prev, ok := v.entries[subject]
	if ok && seq <= prev.Seq {
		return ""
	}
	return Check(subject, prev.Status, ok, e)
}

// subjectKind splits a STATE subject into its kind (endpoint, pool, edge, override) and the
// tokens naming the aggregate, or returns "" when it is none of them (or has the wrong number of
// tokens for its kind).
func subjectKind(subject string) (string, []string) {
	for kind, n := range map[string]int{"endpoint": 3, "pool": 2, "edge": 1, "override": 3} {
		if t := events.SplitSubject(subject, "detour.state."+kind); len(t) == n {
			return kind, t
		}
	}
	return "", nil
}

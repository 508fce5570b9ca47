package state

import (
	"fmt"
	"slices"
	"strings"

	"github.com/detourdev/detour/events"
)

// Check returns why the STATE event e on subject does not fit what was recorded there before
// it — a forged event, or one from a writer that does not share the followers' history — or ""
// when it fits. It fits when its type belongs to the subject's kind (endpoint, pool, edge,
// override, holddown), a transition's payload names the subject's endpoint, pool or edge, and its
// from is prev, the status last recorded on subject (not checked when hasPrev is false: nothing
// was).
func Check(subject string, prev events.Status, hasPrev bool, e events.Envelope) string {
	kind, tokens := subjectKind(subject)
	if kind == "" {
		return fmt.Sprintf("subject %s is no STATE aggregate", subject)
	}
	if !typeBelongs(kind, e.Type) {
		return fmt.Sprintf("type %s does not belong on %s subjects", e.Type, kind)
	}
	if kind == "override" || kind == "holddown" {
		return ""
	}
	// Only the fields checked are decoded, without encoding/json for the payloads Detour writes:
	// a follower checks every transition it reads.
	t, err := e.TransitionHead()
	if err != nil {
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
	if !slices.Equal(named, tokens) {
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

// typeBelongs reports whether events of type typ may be recorded on subjects of kind.
func typeBelongs(kind, typ string) bool {
	switch kind {
	case "endpoint":
		return typ == events.TypeEndpointUp || typ == events.TypeEndpointDown || typ == events.TypeEndpointDrained
	case "pool":
		return typ == events.TypePoolUp || typ == events.TypePoolDown
	case "edge":
		return typ == events.TypeEdgeUp || typ == events.TypeEdgeDown
	case "override":
		return typ == events.TypeOverrideSet || typ == events.TypeOverrideCleared
	case "holddown":
		return typ == events.TypeHoldDownStarted || typ == events.TypeHoldDownCancelled
	}
	return false
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

// subjectKind splits a STATE subject into its kind (endpoint, pool, edge, override, holddown) and the
// tokens naming the aggregate, or returns "" when it is none of them (or has the wrong number of
// tokens for its kind).
func subjectKind(subject string) (string, []string) {
	rest, ok := strings.CutPrefix(subject, "detour.state.")
	if !ok {
		return "", nil
	}
	kind, rest, ok := strings.Cut(rest, ".")
	var n int
	switch kind {
	case "endpoint", "override", "holddown":
		n = 3
	case "pool":
		n = 2
	case "edge":
		n = 1
	}
	if t := strings.Split(rest, "."); ok && n > 0 && len(t) == n {
		return kind, t
	}
	return "", nil
}

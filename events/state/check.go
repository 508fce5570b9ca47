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
// override), a transition's payload names the subject's endpoint, pool or edge, and its from is
// prev, the status last recorded on subject (not checked when hasPrev is false: nothing was).
func Check(subject string, prev events.Status, hasPrev bool, e events.Envelope) string {
	kind, tokens := events.StateAggregate(subject)
	if kind == "" {
		return fmt.Sprintf("subject %s is no STATE aggregate", subject)
	}
	if !events.TypeBelongs(kind, e.Type) {
		return fmt.Sprintf("type %s does not belong on %s subjects", e.Type, kind)
	}
	if kind == "override" {
		return ""
	}
	// Only the fields checked are decoded: a follower checks every transition it reads.
	var t struct {
		App      string        `json:"app"`
		Pool     string        `json:"pool"`
		Endpoint string        `json:"endpoint"`
		Edge     string        `json:"edge"`
		From     events.Status `json:"from"`
		To       events.Status `json:"to"`
	}
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

// Unexpected is Check of the event stored at seq against what the view last recorded on
// subject before it; an event the view has applied already is not checked again. A batch is
// checked item by item, each against what the view recorded on the item's subject, and the
// reasons of the items that do not fit are joined ("subject: why; …"); a checkpoint restates
// what was recorded before and is not checked. A batch that cannot be decoded is unexpected.
func (v *View) Unexpected(subject string, seq uint64, e events.Envelope) string {
	if !events.IsStateBatch(e.Type) {
		return v.unexpected(subject, seq, e)
	}
	facts, err := events.Facts(subject, seq, e)
	if err != nil {
		return err.Error()
	}
	var whys []string
	for _, f := range facts {
		if f.Restated {
			continue
		}
		if why := v.unexpected(f.Subject, f.Seq, f.Env); why != "" {
			whys = append(whys, f.Subject+": "+why)
		}
	}
	return strings.Join(whys, "; ")
}

func (v *View) unexpected(subject string, seq uint64, e events.Envelope) string {
	prev, ok := v.entries[subject]
	if ok && seq <= prev.Seq {
		return ""
	}
	return Check(subject, prev.Status, ok, e)
}

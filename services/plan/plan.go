package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/nats-io/nats.go/jetstream"
)

// Plan is what applying a document would change.
type Plan struct {
	// File names the document.
	File string `json:"file"`
	// Against is the running version compared with; Number 0 when none is running.
	Against config.Version `json:"against"`
	// ExpectVersion is what an apply of exactly this plan expects (--expect-version): Against's
	// number, or that of a later message on the configuration's subject that is no version
	// (published there by hand), which the roles refused and the apply stores over.
	ExpectVersion uint64 `json:"expect_version"`
	// Changes to the configuration, field by field.
	Changes []Change `json:"changes"`
	// Answers are the RRsets whose answers would change at the current state.
	Answers []events.RecordChange `json:"answers"`
	// SecretsNotCompared says that the secrets written inline, which either configuration
	// holds, were compared only as detour config get shows them (Diff without compareSecrets):
	// a change that only a secret makes is not listed.
	SecretsNotCompared bool `json:"secrets_not_compared,omitempty"`
}

// Make compares doc with the running version, as CONFIG's leader holds it (a replica behind it
// holds an older one), and the answers at the current state, the
// secrets written inline only with compareSecrets (Diff); without it, the running version's
// digest is "<redacted>" when its document holds one, since it would check a guessed secret
// offline. An invalid doc is refused with the *config.Error that lists its problems.
func Make(ctx context.Context, js jetstream.JetStream, name string, doc []byte, compareSecrets bool) (*Plan, error) {
	next, err := config.Parse(name, doc)
	if err != nil {
		return nil, err
	}
	p := &Plan{File: name}
	var running *config.Config
	active, err := config.LeaderActive(ctx, js)
	p.ExpectVersion = active.Number
	if errors.Is(err, config.ErrNotAVersion) {
		// The last message on the subject is no version (published there by hand): the roles
		// run the newest version before it, which an apply replaces.
		active, _, err = config.NewestParsed(ctx, js, active.Number)
	}
	switch {
	case errors.Is(err, config.ErrNoVersion):
	case err != nil:
		return nil, err
	default:
		p.Against = active
		p.Against.Document = ""
		if running, err = active.Config(); err != nil {
			// A running version this build cannot parse is compared as if nothing ran.
			running = nil
		}
		if !compareSecrets {
			if _, fields := config.Redact([]byte(active.Document)); len(fields) > 0 {
				p.Against.SHA256 = config.Redacted
			}
		}
	}
	v, err := state.Load(ctx, js)
	if err != nil {
		return nil, err
	}
	return Compare(p, running, next, v, compareSecrets)
}

// Compare fills p with the changes from running (nil: none) to next at the state v, the
// secrets written inline only with compareSecrets (Diff).
func Compare(p *Plan, running, next *config.Config, v *state.View, compareSecrets bool) (*Plan, error) {
	p.Changes = Diff(running, next, compareSecrets)
	p.SecretsNotCompared = !compareSecrets && (len(next.InlineSecrets()) > 0 || running != nil && len(running.InlineSecrets()) > 0)
	answers, err := Answers(running, next, v)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", p.File, err)
	}
	p.Answers = answers
	return p, nil
}

// Write prints p for a person: the version compared with, every change, what the answers would
// become, and the command that applies exactly this plan.
func (p *Plan) Write(w io.Writer) {
	if p.Against.Number == 0 {
		fmt.Fprintf(w, "%s against no running configuration:\n", p.File)
	} else {
		fmt.Fprintf(w, "%s against version %d (applied %s by %s", p.File, p.Against.Number,
			p.Against.Time.Format(time.RFC3339), p.Against.By)
		if p.Against.Message != "" {
			fmt.Fprintf(w, ": %q", p.Against.Message)
		}
		fmt.Fprintln(w, "):")
	}
	if p.ExpectVersion > p.Against.Number {
		// With no version before the message, the roles wait for one: none runs.
		run := "run the version above"
		if p.Against.Number == 0 {
			run = "wait for a version"
		}
		fmt.Fprintf(w, "  (the last message on %s, %d, is no version, published there by hand: the roles refused it and %s; an apply stores over it)\n",
			events.SubjectConfigDoc, p.ExpectVersion, run)
	}
	if p.SecretsNotCompared {
		fmt.Fprintln(w, "  (secrets written inline compared only as detour config get shows them: a read token's plan cannot tell a changed secret; plan with a write token to compare them)")
	}
	switch {
	case len(p.Changes) == 0 && p.ExpectVersion > p.Against.Number:
		// Not a no-op: the apply stores the version over the message that is no version.
		fmt.Fprintf(w, "no changes to the version the roles run; an apply stores it over message %d, which is no version: detour apply %s --expect-version %d\n",
			p.ExpectVersion, p.File, p.ExpectVersion)
		return
	case len(p.Changes) == 0:
		fmt.Fprintln(w, "no changes")
		return
	}
	var add, rm, ch int
	for _, c := range p.Changes {
		fmt.Fprintln(w, "  "+c.String())
		switch c.Op {
		case Added:
			add++
		case Removed:
			rm++
		default:
			ch++
		}
	}
	if len(p.Answers) == 0 {
		fmt.Fprintln(w, "answers now: unchanged")
	} else {
		fmt.Fprintln(w, "answers now:")
		for _, a := range p.Answers {
			fmt.Fprintln(w, "  "+answerLine(a))
		}
	}
	fmt.Fprintf(w, "%d to add, %d to remove, %d to change; apply exactly this with: detour apply %s --expect-version %d\n",
		add, rm, ch, p.File, max(p.ExpectVersion, p.Against.Number))
}

package override

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoOverride means Clear found no override in force on the endpoint or pool.
var ErrNoOverride = errors.New("no override in force")

// subjectOverrides is the wildcard of every override subject.
const subjectOverrides = "detour.state.override.>"

// Check reports the first problem of o as an override to set (or, with action "", to clear),
// naming the field: names must be subject tokens, the action one of force_up, force_down and
// drain, and the reason and author given.
func Check(o events.Override, clearing bool) error {
	if err := events.CheckToken(o.App); err != nil {
		return fmt.Errorf("override app: %w", err)
	}
	if err := events.CheckToken(o.Pool); err != nil {
		return fmt.Errorf("override pool: %w", err)
	}
	if o.Endpoint != "" {
		if err := events.CheckToken(o.Endpoint); err != nil {
			return fmt.Errorf("override endpoint: %w", err)
		}
	}
	switch {
	case clearing && o.Action != "":
		return fmt.Errorf("override action: a clear takes no action, got %q", o.Action)
	case !clearing && o.Action != events.ActionForceUp && o.Action != events.ActionForceDown && o.Action != events.ActionDrain:
		return fmt.Errorf("override action: want force_up, force_down or drain, got %q", o.Action)
	case strings.TrimSpace(o.Reason) == "":
		return errors.New("override reason: must not be empty: say why, the history keeps it")
	case strings.TrimSpace(o.By) == "":
		return errors.New("override by: must not be empty: name who made it, e.g. user@host")
	}
	return nil
}

// Validate reports whether the app, pool and endpoint o names exist in the configuration.
func Validate(c *config.Config, o events.Override) error {
	a := c.App(o.App)
	if a == nil {
		return fmt.Errorf("override app: no app %q in the configuration", o.App)
	}
	p := a.Pool(o.Pool)
	if p == nil {
		return fmt.Errorf("override pool: no pool %q in app %q", o.Pool, o.App)
	}
	if o.Endpoint != "" && p.Endpoint(o.Endpoint) == nil {
		return fmt.Errorf("override endpoint: no endpoint %q in pool %q of app %q", o.Endpoint, o.Pool, o.App)
	}
	return nil
}

// Set records o: an override of the endpoint o.Endpoint, or of every endpoint of the pool when
// it is "". It replaces any override in force there.
func Set(ctx context.Context, js jetstream.JetStream, o events.Override) error {
	if err := Check(o, false); err != nil {
		return err
	}
	e, err := events.New(events.TypeOverrideSet, "override/"+o.By, time.Now(), o)
	if err != nil {
		return err
	}
	subject := events.OverrideSubject(o.App, o.Pool, o.Endpoint)
	if _, err := events.Publish(ctx, js, subject, e); err != nil {
		return fmt.Errorf("set override on %s: %w", subject, err)
	}
	return nil
}

// Clear ends the override in force on the endpoint o.Endpoint, or on the pool when it is "",
// recording who cleared it and why. It returns an error wrapping ErrNoOverride when none is in
// force there.
func Clear(ctx context.Context, js jetstream.JetStream, o events.Override) error {
	o.Action = ""
	if err := Check(o, true); err != nil {
		return err
	}
	subject := events.OverrideSubject(o.App, o.Pool, o.Endpoint)
	st, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	last, seq, ok, err := events.Last(ctx, st, subject)
	if err != nil {
		return err
	}
	if !ok || last.Type != events.TypeOverrideSet {
		return fmt.Errorf("clear override on %s: %w", subject, ErrNoOverride)
	}
	e, err := events.New(events.TypeOverrideCleared, "override/"+o.By, time.Now(), o)
	if err != nil {
		return err
	}
	if _, err := events.Append(ctx, js, subject, e, seq); err != nil {
		return fmt.Errorf("clear override: %w", err)
	}
	return nil
}

// InForce is one override in force.
type InForce struct {
	events.Override
	// Since is when it was set; EventID the event that set it.
	Since   time.Time
	EventID string
}

// List returns every override in force, ordered by app, pool and endpoint (a pool's own
// override first).
func List(ctx context.Context, js jetstream.JetStream) ([]InForce, error) {
	st, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subjectOverrides))
	if err != nil {
		return nil, fmt.Errorf("list override subjects: %w", err)
	}
	var out []InForce
	for subject := range info.State.Subjects {
		e, _, ok, err := events.Last(ctx, st, subject)
		if err != nil {
			return nil, err
		}
		if !ok || e.Type != events.TypeOverrideSet {
			continue
		}
		var o events.Override
		if err := e.Payload(&o); err != nil {
			return nil, fmt.Errorf("read override on %s: %w", subject, err)
		}
		out = append(out, InForce{Override: o, Since: e.Time, EventID: e.ID})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Override, out[j].Override
		if a.App != b.App {
			return a.App < b.App
		}
		if a.Pool != b.Pool {
			return a.Pool < b.Pool
		}
		return a.Endpoint < b.Endpoint
	})
	return out, nil
}

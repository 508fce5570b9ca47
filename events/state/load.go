package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Load builds a view from the last event of every STATE subject, as a client that needs the
// current state once (a plan, the API) reads it. A last event that is malformed or no state
// event is skipped, as every follower of STATE skips it: STATE keeps it for ever.
func Load(ctx context.Context, js jetstream.JetStream) (*View, error) {
	st, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.SubjectState))
	if err != nil {
		return nil, fmt.Errorf("list state subjects: %w", err)
	}
	v := NewView()
	for subject := range info.State.Subjects {
		e, seq, ok, err := events.Last(ctx, st, subject)
		switch {
		case errors.Is(err, events.ErrMalformed):
		case err != nil:
			return nil, err
		case ok:
			// Apply fails only for an event it cannot use (ErrMalformed).
			_, _ = v.Apply(subject, seq, e)
		}
	}
	return v, nil
}

package state

import (
	"context"
	"fmt"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Load builds a view from the last event of every STATE subject, as a client that needs the
// current state once (a plan, the API) reads it.
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
		if err != nil {
			return nil, err
		}
		if ok {
			if _, err := v.Apply(subject, seq, e); err != nil {
				return nil, fmt.Errorf("load state of %s: %w", subject, err)
			}
		}
	}
	return v, nil
}

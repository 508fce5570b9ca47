package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Load builds a view from the last event of every STATE subject, as a client that needs the
// current state once (a plan, the API) reads it.
func Load(ctx context.Context, js jetstream.JetStream) (*View, error) {
	v := NewView()
	err := ReadLast(ctx, js, func(f events.Fact) error {
		if _, err := v.Apply(f.Subject, f.Seq, f.Env); err != nil {
			return fmt.Errorf("load state of %s: %w", f.Subject, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// ReadLast calls f with every fact the last message of each STATE subject records (see
// events.Facts): the last lone event of each subject, and every item of the last batch of each
// batch slot and of the last part of each checkpoint. Together they hold the last transition of
// every endpoint and pool; a subject's facts may come several times, the one with the highest
// sequence being the latest. A message that cannot be decoded (or a batch that is not valid as
// a whole) is skipped, as followers skip it. It stops at the first error f returns.
func ReadLast(ctx context.Context, js jetstream.JetStream, f func(events.Fact) error) error {
	st, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", events.StreamState, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.SubjectState))
	if err != nil {
		return fmt.Errorf("list state subjects: %w", err)
	}
	for subject := range info.State.Subjects {
		e, seq, ok, err := events.Last(ctx, st, subject)
		if errors.Is(err, events.ErrMalformed) {
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		facts, err := events.Facts(subject, seq, e)
		if err != nil {
			continue // malformed as a whole: nothing of it is folded, as followers skip it
		}
		for _, fact := range facts {
			if err := f(fact); err != nil {
				return err
			}
		}
	}
	return nil
}

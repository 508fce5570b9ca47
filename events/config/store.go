package config

import (
	"context"
	"fmt"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish validates doc and, if it is valid, stores it on the CONFIG stream as the active
// configuration. An invalid document is refused whole and nothing is published.
func Publish(ctx context.Context, js jetstream.JetStream, name string, doc []byte, by string) (*Config, error) {
	c, _, err := Apply(ctx, js, name, doc, ApplyOptions{By: by})
	return c, err
}

// Latest reads the active configuration from the CONFIG stream.
func Latest(ctx context.Context, js jetstream.JetStream) (*Config, error) {
	s, err := js.Stream(ctx, events.StreamConfig)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", events.StreamConfig, err)
	}
	e, seq, ok, err := events.Last(ctx, s, events.SubjectConfigDoc)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no configuration on %s yet: run `detour apply FILE`", events.SubjectConfigDoc)
	}
	var applied events.ConfigApplied
	if err := e.Payload(&applied); err != nil {
		return nil, err
	}
	return ParseStored(fmt.Sprintf("%s (seq %d)", events.SubjectConfigDoc, seq), []byte(applied.Document))
}

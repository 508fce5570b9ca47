package config_test

import (
	"errors"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// A message on the configuration's subject that is not an event (published there by hand) is
// the last one CONFIG holds: the roles keep the version before it, and applying a good document
// is how an operator puts a version on top of it. Apply read the junk as the active version,
// failed to decode it, and refused every document, with or without --expect-version.
func TestAnApplyStoresOnTopOfAMessageThatIsNoVersion(t *testing.T) {
	ns := eventstest.Start(t)
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	ack, err := ns.JS.Publish(t.Context(), events.SubjectConfigDoc, []byte("not an event"))
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatalf("apply over a message that is no version: %v", err)
	}
	if v.Unchanged || v.Number <= ack.Sequence {
		t.Fatalf("apply over a message that is no version at %d: version %d (unchanged %t), want a new one after it", ack.Sequence, v.Number, v.Unchanged)
	}
	expect := v.Number
	if _, err := ns.JS.Publish(t.Context(), events.SubjectConfigDoc, []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test", Expect: &expect}); !errors.Is(err, config.ErrVersionConflict) {
		t.Fatalf("apply expecting version %d over a message stored after it: %v, want refused as a conflict", expect, err)
	}
}

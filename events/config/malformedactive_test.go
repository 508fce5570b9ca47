package config_test

import (
	"errors"
	"strings"
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

// An apply expecting a version other than a message that is no version, the last on the subject,
// is refused as a version conflict that says what that message is, where it failed with the
// message's decoding error; one expecting that message's number passes the check. The history
// leaves such a message out: one made the whole history unreadable.
func TestAnExpectedVersionAndTheHistoryOverAMessageThatIsNoVersion(t *testing.T) {
	ns := eventstest.Start(t)
	_, v, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	junk, err := ns.JS.Publish(t.Context(), events.SubjectConfigDoc, []byte("not an event"))
	if err != nil {
		t.Fatal(err)
	}
	err = config.CheckExpect(t.Context(), ns.JS, "v2.yaml", v.Number)
	if !errors.Is(err, config.ErrVersionConflict) || !strings.Contains(err.Error(), "is no version") {
		t.Errorf("expecting version %d below a message that is no version: %v, want a conflict naming that message", v.Number, err)
	}
	if err := config.CheckExpect(t.Context(), ns.JS, "v2.yaml", junk.Sequence); err != nil {
		t.Errorf("expecting the message that is no version, %d: %v, want it accepted", junk.Sequence, err)
	}
	vs, err := config.History(t.Context(), ns.JS)
	if err != nil {
		t.Fatalf("history with a message that is no version: %v", err)
	}
	if len(vs) != 1 || vs[0].Number != v.Number {
		t.Errorf("history %+v, want version %d alone", vs, v.Number)
	}
}

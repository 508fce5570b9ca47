package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

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

// An event of another type published on the configuration's subject (a transition copied there
// with the nats CLI), or one of the version's type whose data is no version's, is no version
// either: it has no document to run. The first was read as a version with an empty document, by
// nobody, of no digest (config history listed it; a plan compared with nothing running, every
// app and zone added, while the roles ran the version before it); the second was read as no
// version at all, numbered 0, so that every apply was refused with its decoding error and every
// role started after it waited for the active configuration for good.
func TestAnEventThatIsNoVersionOnTheConfigurationSubjectIsTakenForNone(t *testing.T) {
	transition, err := events.New(events.TypeEndpointDown, "decider/a", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	applied, err := events.New(events.TypeConfigApplied, "someone", time.Now(), "not a version")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []events.Envelope{transition, applied} {
		t.Run(e.Type, func(t *testing.T) {
			ns := eventstest.Start(t)
			_, v, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
			if err != nil {
				t.Fatal(err)
			}
			junk, err := events.Publish(t.Context(), ns.JS, events.SubjectConfigDoc, e)
			if err != nil {
				t.Fatal(err)
			}
			vs, err := config.History(t.Context(), ns.JS)
			if err != nil {
				t.Errorf("history over a %s: %v", e.Type, err)
			} else if len(vs) != 1 || vs[0].Number != v.Number {
				t.Errorf("history %+v, want version %d alone (%d is a %s)", vs, v.Number, junk.Sequence, e.Type)
			}
			if active, err := config.LeaderActive(t.Context(), ns.JS); !errors.Is(err, events.ErrMalformed) || active.Number != junk.Sequence {
				t.Errorf("the active version over a %s at %d: %d, %v; want that message, which is no version", e.Type, junk.Sequence, active.Number, err)
			}
			_, next, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
			if err != nil || next.Number <= junk.Sequence {
				t.Errorf("apply over a %s at %d: version %d, %v; want a new one after it", e.Type, junk.Sequence, next.Number, err)
			}
		})
	}
}

package api_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
)

// TestAnAppsAnswerFollowsAStateStreamCreatedAgain: an operator deletes STATE (or a server loses
// its store) and it is created again, its sequences starting over at 1. The API shows what the
// new stream says, though its first event has the sequence of one the API folded before.
func TestAnAppsAnswerFollowsAStateStreamCreatedAgain(t *testing.T) {
	f := start(t)
	answer := func() []string {
		var app api.App
		_, body := f.do(t, "GET", "/v1/apps/shop", f.read, "")
		_ = json.Unmarshal([]byte(body), &app)
		return app.Answer.A
	}
	var got []string
	f.transition(t, "w1", events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { got = answer(); return len(got) == 1 && got[0] == "127.0.0.12" },
		"shop to answer east once west is down: %v", &got)

	if err := f.ns.JS.DeleteStream(t.Context(), events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(t.Context(), f.ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	f.transition(t, "w1", events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { got = answer(); return len(got) == 1 && got[0] == "127.0.0.11" },
		"shop to answer west, as the new stream says: %v", &got)
}

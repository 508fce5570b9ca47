package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
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

// TestTheConfigurationOfACONFIGStreamCreatedAgainIsShown: CONFIG is deleted and created again,
// its version numbers (its sequences) starting over at 1. The API shows the apps of the new
// stream's first version, though the old stream had reached version 2.
func TestTheConfigurationOfACONFIGStreamCreatedAgainIsShown(t *testing.T) {
	f := start(t)
	if _, _, err := config.Apply(t.Context(), f.ns.JS, "v2.yaml", []byte(strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)),
		config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	var st api.Status
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, body := f.do(t, "GET", "/v1/status", f.read, "")
		return json.Unmarshal([]byte(body), &st) == nil && st.ConfigVersion == 2
	}, "the API to show version 2: %d", &st.ConfigVersion)
	if err := f.ns.JS.DeleteStream(t.Context(), events.StreamConfig); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(t.Context(), f.ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	blog := doc + `  - name: blog
    fqdn: blog.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: b1, address: "127.0.0.21:80"}]}
`
	if _, _, err := config.Apply(t.Context(), f.ns.JS, "v1.yaml", []byte(blog), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	var code int
	eventstest.Eventually(t, 5*time.Second, func() bool { code, _ = f.do(t, "GET", "/v1/apps/blog", f.read, ""); return code == 200 },
		"the new stream's app blog shown: %d", &code)
}

package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
)

// STATE refuses an append past its bound (it keeps every transition: discard new), answering
// "maximum messages exceeded" or "maximum bytes exceeded" with status 503, which holds until an
// operator raises the bound. An override then is no leader election: it was answered 503 with
// Retry-After, "JetStream is electing a leader … try again", and a client told to try again in
// 5 s did so for ever. It is answered 502 with JetStream's reason.
func TestAnOverrideStateHasNoRoomForIsNotAnsweredAsALeaderElection(t *testing.T) {
	f := start(t)
	f.transition(t, "w1", events.StatusDown)
	st, err := f.ns.JS.Stream(t.Context(), events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	c.MaxMsgs = int64(st.CachedInfo().State.Msgs) // full: discard new refuses the next
	if c.MaxMsgs == 0 {
		t.Fatal("STATE holds nothing")
	}
	if _, err := f.ns.JS.UpdateStream(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", f.url+"/v1/overrides", strings.NewReader(`{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.write)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Retry-After") != "" || strings.Contains(b.String(), "electing") ||
		!strings.Contains(b.String(), "maximum messages exceeded") {
		t.Errorf("override STATE has no room for: %d (Retry-After %q) %s, want 502 with JetStream's reason, no Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b.String())
	}
}

package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
)

// forgeState appends a transition of shop/west/w1 to STATE as a client with no right to would.
func forgeState(t *testing.T, srv *eventstest.Server, typ string, tr events.Transition) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "forger", time.Now().Add(time.Hour), tr) // dated in the future, too
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAForgedTransitionIsReportedAndTheDeciderReassertsWhatTheProbesSay(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	// A well-formed forgery: only the probes contradict it.
	forged := forgeState(t, srv, events.TypeEndpointDown,
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "endpoint.shop.west.w1:up")
	last := stateOf(t, srv)[3].Env
	if last.Source != "decider/a" || last.Cause != forged.ID {
		t.Errorf("the re-assertion has source %q and cause %q, want decider/a and the forged event %s", last.Source, last.Cause, forged.ID)
	}
	if r.stats.Unexpected.Load() != 0 || r.stats.Reasserted.Load() != 1 {
		t.Errorf("unexpected %d (want 0: it fits its subject), reasserted %d (want 1)", r.stats.Unexpected.Load(), r.stats.Reasserted.Load())
	}

	// A clumsy one: its payload names another endpoint, and its from is not what STATE holds.
	forgeState(t, srv, events.TypeEndpointDown,
		events.Transition{App: "shop", Pool: "west", Endpoint: "e1", From: events.StatusDown, To: events.StatusDown})
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Unexpected.Load() == 1 && r.stats.Reasserted.Load() == 2 },
		"unexpected %d (want 1), reasserted %d (want 2)", r.stats.Unexpected.Load, r.stats.Reasserted.Load)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "endpoint.shop.west.w1:up",
		"endpoint.shop.west.w1:down", "endpoint.shop.west.w1:up")
}

// TestATransitionFollowingAFutureDatedEventReadBackIsDatedByTheStreams: a transition of w1
// forged an hour ahead waits on STATE when a configuration adds w1's pool; the decider reads it
// back (as it reads what it adopts, or re-reads after a conflict), then w1 fails three times. The
// down is appended at once and dated by the failure that caused it, as when STATE delivers the
// forgery: read back unclamped, the forgery's date held every later decision on w1 as older
// than it, so each was recorded a second late, re-asserted, and dated an hour ahead, and so was
// every transition after it.
func TestATransitionFollowingAFutureDatedEventReadBackIsDatedByTheStreams(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	eastOnly := strings.Replace(shopYAML, `      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`, "", 1)
	r := start(t, srv.JS, eventstest.Config(t, eastOnly), "decider/a", func(o *decider.Options) { o.Configs = configs })
	eventstest.Eventually(t, 5*time.Second, r.stats.Live.Load, "decider not live")
	forgeState(t, srv, events.TypeEndpointUp,
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUnknown, To: events.StatusUp})
	configs <- eventstest.Config(t, shopYAML)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	down := stateOf(t, srv)[2].Env
	if limit := time.Now().Add(time.Minute); down.Time.After(limit) {
		t.Errorf("w1 down dated %s, after the time it was read %s: the forgery's date pinned it", down.Time.Format(time.RFC3339Nano), limit.Add(-time.Minute).Format(time.RFC3339Nano))
	}
	if got := r.stats.Reasserted.Load(); got != 0 {
		t.Errorf("reasserted %d, want 0: the down was due when decided", got)
	}
}

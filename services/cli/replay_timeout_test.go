package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
)

// TestReplayThroughAHungReplicaPrintsTheTimelineAfterItsTimeout: a replica that takes the
// replay's direct get of what STATE stored before the window and never answers (its node hung)
// held `detour replay` until Ctrl-C; with --timeout 1s the replay reads that on a consumer once
// the second has passed, and prints the window.
func TestReplayThroughAHungReplicaPrintsTheTimelineAfterItsTimeout(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	// The one answering STATE's direct gets is a replica that never answers.
	sc := srv.Stream(t, events.StreamState).CachedInfo().Config
	sc.AllowDirect = false
	if _, err := srv.JS.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "shop.yaml", `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 40ms, timeout: 20ms, stale_after: 130ms}
    hold_down: 90ms
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`)
	hung := eventstest.Connect(t, srv.URL)
	if _, err := hung.Subscribe("$JS.API.DIRECT.GET."+events.StreamState, func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := hung.Flush(); err != nil {
		t.Fatal(err)
	}
	transition := func(typ string, from, to events.Status) {
		t.Helper()
		tr := events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: from, To: to, Reason: "flapped"}
		e, err := events.New(typ, "decider/d1", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
	}
	transition(events.TypeEndpointDown, events.StatusUp, events.StatusDown)
	// The window opens once its warm-up (hold_down + stale_after, 220ms) is clear of w1's down.
	from := time.Now().Add(300 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(from) }, "the window to open")
	transition(events.TypeEndpointUp, events.StatusDown, events.StatusUp)

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := run("replay", "--nats", srv.URL, "--config", cfg, "--from", from.UTC().Format(time.RFC3339Nano), "--timeout", "1s")
		done <- result{code, stdout, stderr}
	}()
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stdout, "shop/west/w1  down → up") {
			t.Errorf("replay --timeout 1s through a hung replica: exit %d, want 0 and w1's up:\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("replay --timeout 1s through a hung replica still waits after a minute")
	}
}

// TestReplayOfASlowClusterStopsAfterItsTimeoutNamingIt: a cluster that answers later than
// --timeout (loaded, or JetStream without quorum) stops the replay with exit 1 and a message
// naming the bound, where it waited without one.
func TestReplayOfASlowClusterStopsAfterItsTimeoutNamingIt(t *testing.T) {
	srv := eventstest.Start(t)
	link := eventstest.NewSlowLink(t, srv.URL)
	link.Delay(0, 2*time.Second)
	code, _, stderr := run("replay", "--nats", link.URL, "--from", "1m", "--timeout", "1s")
	if want := "the NATS cluster did not answer within 1s"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("replay --timeout 1s of a cluster answering after 2s: exit %d, want 1 and %q:\n%s", code, want, stderr)
	}
}

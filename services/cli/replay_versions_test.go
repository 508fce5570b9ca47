package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// TestReplayWhatIfDecidesEachStretchWithTheVersionActiveThen: w1 went down on one failure under
// fall 1; fall 3 was applied afterwards. `detour replay --what-if quorum=0.5`, the live quorum,
// re-decides the failure under the version active then and finds the same transition, where it
// used to re-decide the whole history with fall 3 and say the recorded down would not happen.
func TestReplayWhatIfDecidesEachStretchWithTheVersionActiveThen(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	v1 := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 1, rise: 1, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`
	if _, err := config.Publish(ctx, srv.JS, "v1.yaml", []byte(v1), "alice@box"); err != nil {
		t.Fatal(err)
	}
	r := events.ProbeResult{ID: "a-1", At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "a", Prober: "p", Check: "http"}
	e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, srv.JS, events.ProbeSubject("a", "shop", "west", "w1"), e)
	if err != nil {
		t.Fatal(err)
	}
	probes, err := srv.JS.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	m, err := probes.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	// What the decider appended: down at the result's stored time, caused by it.
	down, err := events.Derived(events.TypeEndpointDown, "decider-1", r.ID, "k", m.Time, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		Address: "127.0.0.11:8081", To: events.StatusDown, Reason: "a: 1 consecutive failures (fall 1); 0 of 1 voting regions see it up (quorum 0.5)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, srv.JS, events.EndpointStateSubject("shop", "west", "w1"), down); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Publish(ctx, srv.JS, "v2.yaml", []byte(strings.Replace(v1, "fall: 1", "fall: 3", 1)), "alice@box"); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run("replay", "--nats", srv.URL, "--from", "1h", "--what-if", "quorum=0.5", "--format", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("replay exited %d, stderr %q; want 0 and nothing on stderr", code, stderr)
	}
	var pairs []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, `"kind":"what_if"`) {
			pairs = append(pairs, l)
		}
	}
	if len(pairs) != 1 || !strings.Contains(pairs[0], `"verdict":"same"`) {
		t.Errorf("what-if pairs %q, want w1's down, the same", pairs)
	}
}

// TestReplaySaysOnStderrWhatPROBESNoLongerHolds: `detour replay --from 1h` over a PROBES that
// discarded its oldest results at its bounds prints its timeline, exits 0, and says on stderr
// from when the results are missing.
func TestReplaySaysOnStderrWhatPROBESNoLongerHolds(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	for i := range 2 {
		r := events.ProbeResult{ID: fmt.Sprint("a-", i), At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "a", Prober: "p", Check: "http"}
		e, err := events.New(events.TypeProbeCompleted, "prober/a", r.At, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, srv.JS, events.ProbeSubject("a", "shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
	}
	probes, err := srv.JS.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	sc := probes.CachedInfo().Config
	sc.MaxMsgs = 1
	if _, err := srv.JS.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("replay", "--nats", srv.URL, "--from", "1h")
	if code != 0 || !strings.Contains(stdout, "1 probe results") || !strings.HasPrefix(stderr, "detour replay: warning: PROBES no longer holds what it stored before ") {
		t.Errorf("replay exited %d, stdout %q, stderr %q; want 0, the result PROBES holds, and a warning naming PROBES", code, stdout, stderr)
	}
}

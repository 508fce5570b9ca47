package decider_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// result is one encoded probe result of shop/west/w1 from region eu, as a prober publishes it:
// its envelope id, the result's id, is its Nats-Msg-Id.
type result struct {
	id   string
	data []byte
}

func failed(t *testing.T, n int) result {
	t.Helper()
	id := fmt.Sprintf("eu-%d", n)
	r := events.ProbeResult{ID: id, At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", Prober: "test", Check: "http"}
	e, err := events.New(events.TypeProbeCompleted, "prober/eu", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	e.ID = id
	return result{id: id, data: e.Encode()}
}

// publish sends r to PROBES; with refused, under an expectation PROBES refuses, so that it is
// not stored (as while PROBES has no leader) but still goes out on the wire.
func publish(t *testing.T, srv *eventstest.Server, r result, refused bool) {
	t.Helper()
	m := nats.NewMsg(events.ProbeSubject("eu", "shop", "west", "w1"))
	m.Data = r.data
	m.Header.Set(jetstream.MsgIDHeader, r.id)
	if refused {
		m.Header.Set(jetstream.ExpectedLastSeqHeader, "1000000")
	}
	_, err := srv.JS.PublishMsg(context.Background(), m)
	if refused && err == nil {
		t.Fatalf("PROBES stored %s despite a wrong expected sequence", r.id)
	}
	if !refused && err != nil {
		t.Fatal(err)
	}
}

func TestResultsPROBESCouldNotStoreAreFoldedAsHeardOnTheWire(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	for i := range 3 {
		publish(t, srv, failed(t, i+1), true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	if got := r.stats.Heard.Load(); got != 3 {
		t.Errorf("results folded as heard = %d, want 3", got)
	}
	var tr events.Transition
	if err := stateOf(t, srv)[0].Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if want := []string{"eu-1", "eu-2", "eu-3"}; fmt.Sprint(tr.Results) != fmt.Sprint(want) {
		t.Errorf("transition results %v, want %v", tr.Results, want)
	}
}

func TestAResultHeardOnTheWireAndLaterDeliveredByPROBESIsFoldedOnce(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	first := []result{failed(t, 1), failed(t, 2)}
	for _, res := range first {
		publish(t, srv, res, true)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Heard.Load() == 2 }, "2 results folded as heard, got %d", r.stats.Heard.Load)
	// PROBES stores and delivers the same two results later (as after an election): with fall 3,
	// folding them again would take w1 down on two failures.
	for _, res := range first {
		publish(t, srv, res, false)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == 2 }, "PROBES delivered %d of 2 messages", r.stats.Messages.Load)
	if got := r.stats.Results.Load(); got != 2 {
		t.Fatalf("results folded = %d after two heard and the same two delivered, want 2", got)
	}
	if h := history(t, srv); len(h) != 0 {
		t.Fatalf("STATE holds %v after two failures with fall 3, want nothing", h)
	}
	publish(t, srv, failed(t, 3), false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	if got := r.stats.Results.Load(); got != 3 {
		t.Errorf("results folded = %d, want 3", got)
	}
}

// windowResult is a failed result of shop/west/w1 from eu's prober p for window n, as a
// prober publishes it: under an id of its own.
func windowResult(t *testing.T, p string, n int64) result {
	t.Helper()
	id := fmt.Sprintf("eu-%s-%d", p, n)
	r := events.ProbeResult{ID: id, At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", Prober: p, Check: "http", Window: n}
	e, err := events.New(events.TypeProbeCompleted, "prober/eu/"+p, r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	e.ID = id
	return result{id: id, data: e.Encode()}
}

// Two probers of a region that both ran a window's check during a hand-over publish two results
// under two ids, which PROBES stores both: they count as one, whether PROBES delivers them or
// they are heard on the wire.
func TestTwoProbersResultsOfOneWindowCountOnceFromPROBESAndFromTheWire(t *testing.T) {
	for _, refused := range []bool{false, true} {
		t.Run(map[bool]string{false: "stored", true: "heard"}[refused], func(t *testing.T) {
			srv := eventstest.Start(t)
			r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
			for _, res := range []result{windowResult(t, "p1", 1), windowResult(t, "p2", 1), windowResult(t, "p2", 2), windowResult(t, "p1", 2)} {
				publish(t, srv, res, refused)
			}
			eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Results.Load()+r.stats.Heard.Load() >= 2 },
				"the first results folded")
			publish(t, srv, windowResult(t, "p2", 3), false)
			waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
			var tr events.Transition
			if err := stateOf(t, srv)[0].Env.Payload(&tr); err != nil {
				t.Fatal(err)
			}
			if len(tr.Results) != 3 || tr.Results[2] != "eu-p2-3" {
				t.Errorf("transition results %v, want one of each window, the third eu-p2-3", tr.Results)
			}
			if got := r.stats.Results.Load(); got != 3 {
				t.Errorf("results folded = %d, want 3: one per window", got)
			}
		})
	}
}

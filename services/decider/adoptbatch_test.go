package decider_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
	"github.com/nats-io/nats.go"
)

// bigApp is an app of pools × endpoints whose pools are available only while every endpoint is.
func bigApp(pools, endpoints int) string {
	var b strings.Builder
	b.WriteString("  - name: big\n    fqdn: big.demo.test\n    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}\n    pools:\n")
	for p := range pools {
		fmt.Fprintf(&b, "      - name: p%d\n        min_available: %d\n        endpoints:\n", p, endpoints)
		for e := range endpoints {
			fmt.Fprintf(&b, "          - {name: e%d, address: \"10.1.%d.%d:80\"}\n", e, p, e+1)
		}
	}
	return b.String()
}

// A version adding 2,000 endpoints that STATE records up (a version applied again after it was
// taken away, or a replica given a new version while others decided the endpoints meanwhile) is
// adopted in a few reads of STATE, not three an endpoint one after another (4,010 here, during
// which the replica decided nothing): every endpoint's recorded status and override is adopted,
// so that each pool, available only while all its endpoints are, is recorded up, but the one
// whose endpoint e7 is forced down, which goes down with it.
func TestAVersionAddingThousandsOfEndpointsAdoptsWhatSTATERecordsInAFewReads(t *testing.T) {
	const pools, endpoints = 10, 200
	srv := eventstest.Start(t)
	ctx := context.Background()
	for p := range pools {
		for e := range endpoints {
			tr := events.Transition{App: "big", Pool: fmt.Sprintf("p%d", p), Endpoint: fmt.Sprintf("e%d", e), To: events.StatusUp}
			ev, err := events.New(events.TypeEndpointUp, "decider/other", time.Now(), tr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := events.PublishAsync(srv.JS, events.EndpointStateSubject(tr.App, tr.Pool, tr.Endpoint), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-srv.JS.PublishAsyncComplete()
	forced := events.Override{App: "big", Pool: "p0", Endpoint: "e7", By: "alice@box", Reason: "maintenance", Action: events.ActionForceDown}
	if err := override.Set(ctx, srv.JS, forced); err != nil {
		t.Fatal(err)
	}

	configs := make(chan *config.Config, 1)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "d1", func(o *decider.Options) { o.Configs = configs })
	reads := directGets(t, srv)
	configs <- eventstest.Config(t, shopYAML+bigApp(pools, endpoints))
	eventstest.Eventually(t, 30*time.Second, func() bool { return r.stats.PoolTransitions.Load() >= pools },
		"%d of %d pools decided", r.stats.PoolTransitions.Load, pools)

	st := srv.Stream(t, events.StreamState)
	for p := range pools {
		want := events.TypePoolUp
		if p == 0 {
			want = events.TypePoolDown
		}
		if e, _, _, err := events.Last(ctx, st, events.PoolStateSubject("big", fmt.Sprintf("p%d", p))); err != nil || e.Type != want {
			t.Errorf("pool p%d: last event %q (%v), want %s", p, e.Type, err, want)
		}
	}
	if e, _, _, err := events.Last(ctx, st, events.EndpointStateSubject("big", "p0", "e7")); err != nil || e.Type != events.TypeEndpointDown {
		t.Errorf("e7, forced down: last event %q (%v), want %s", e.Type, err, events.TypeEndpointDown)
	}
	if n := r.stats.Transitions.Load(); n != 1 {
		t.Errorf("%d endpoint transitions appended, want 1 (e7 forced down): the others are recorded up", n)
	}
	// Three lists of 1,024 subjects or fewer for 4,010 subjects, a page or two each, and the
	// pools' own reads; each sent again every 50-200 ms while no copy answered.
	if n := reads.Load(); n > 100 {
		t.Errorf("%d direct gets to adopt %d endpoints, want at most 100", n, pools*endpoints)
	}
}

// directGets counts the direct gets srv answers from now on.
func directGets(t *testing.T, srv *eventstest.Server) *atomic.Int64 {
	t.Helper()
	counter := eventstest.Connect(t, srv.URL)
	var reads atomic.Int64
	if _, err := counter.Subscribe("$JS.API.DIRECT.GET.>", func(*nats.Msg) { reads.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := counter.Flush(); err != nil {
		t.Fatal(err)
	}
	return &reads
}

// A replica starting with 2,000 endpoints that STATE records up reads them by its STATE
// consumer (the last event of each subject), not by a read an endpoint, as a version adding them
// did: it goes live with every pool, available only while all its endpoints are, recorded up,
// having sent no direct get.
func TestAReplicaStartingWithThousandsOfEndpointsReadsSTATEWithoutAReadAnEndpoint(t *testing.T) {
	const pools, endpoints = 10, 200
	srv := eventstest.Start(t)
	for p := range pools {
		for e := range endpoints {
			tr := events.Transition{App: "big", Pool: fmt.Sprintf("p%d", p), Endpoint: fmt.Sprintf("e%d", e), To: events.StatusUp}
			ev, err := events.New(events.TypeEndpointUp, "decider/other", time.Now(), tr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := events.PublishAsync(srv.JS, events.EndpointStateSubject(tr.App, tr.Pool, tr.Endpoint), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-srv.JS.PublishAsyncComplete()
	reads := directGets(t, srv)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML+bigApp(pools, endpoints)), "d1")
	eventstest.Eventually(t, 30*time.Second, func() bool { return r.stats.PoolTransitions.Load() >= pools },
		"%d of %d pools decided", r.stats.PoolTransitions.Load, pools)
	if n := r.stats.Transitions.Load(); n != 0 {
		t.Errorf("%d endpoint transitions appended, want none: every endpoint is recorded up", n)
	}
	if n := reads.Load(); n > 10 {
		t.Errorf("%d direct gets to start with %d endpoints, want at most 10 (none here)", n, pools*endpoints)
	}
}

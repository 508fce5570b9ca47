package decider_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const shopYAML = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}
    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
      - name: east
        endpoints: [{name: e1, address: "127.0.0.12:8081"}]
`

// replica is one decider running in the test, stopped by stop or when the test ends.
type replica struct {
	stats *decider.Stats
	stop  func()
}

func start(t testing.TB, js jetstream.JetStream, c *config.Config, name string, tweak ...func(*decider.Options)) *replica {
	t.Helper()
	o := decider.Options{JS: js, Config: c, Name: name, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
	for _, f := range tweak {
		f(&o)
	}
	r := &replica{stats: o.Stats, stop: eventstest.Run(t, "decider "+name, func(ctx context.Context) error { return decider.Run(ctx, o) })}
	eventstest.Eventually(t, 5*time.Second, o.Stats.Live.Load, "decider %s did not go live", name)
	return r
}

// prober publishes results as one region of probers would, with readable ids.
type prober struct {
	t      testing.TB
	js     jetstream.JetStream
	region string
	n      int
	// lastSeq is the PROBES sequence of the last result sent.
	lastSeq uint64
}

func (p *prober) send(app, pool, endpoint string, ok bool) string {
	p.t.Helper()
	p.n++
	r := events.ProbeResult{ID: fmt.Sprintf("%s-%d", p.region, p.n), At: time.Now(), App: app, Pool: pool,
		Endpoint: endpoint, Region: p.region, Prober: "test", Check: "http", OK: ok}
	e, err := events.New(events.TypeProbeCompleted, "prober/"+p.region, r.At, r)
	if err != nil {
		p.t.Fatal(err)
	}
	// Payload names that are no subject tokens, on a subject the decider reads.
	subject := "detour.probe." + p.region + ".invalid.names.here"
	if events.ValidToken(app) && events.ValidToken(pool) && events.ValidToken(endpoint) {
		subject = events.ProbeSubject(p.region, app, pool, endpoint)
	}
	ack, err := events.Publish(context.Background(), p.js, subject, e)
	if err != nil {
		p.t.Fatal(err)
	}
	p.lastSeq = ack.Sequence
	return r.ID
}

// stamp is when PROBES stored the message at seq.
func stamp(t testing.TB, srv *eventstest.Server, stream string, seq uint64) time.Time {
	t.Helper()
	m, err := srv.Stream(t, stream).GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Time
}

// stored is one STATE message as a reader of the stream sees it, stored at Seq.
type stored struct {
	Subject string
	Env     events.Envelope
	Seq     uint64
}

// stateOf returns STATE's transitions and overrides, oldest first.
func stateOf(t testing.TB, srv *eventstest.Server) []stored {
	t.Helper()
	ctx := context.Background()
	st := srv.Stream(t, events.StreamState)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("STATE seq %d: %v", seq, err)
		}
		if strings.HasPrefix(m.Subject, "detour.state.holddown.") {
			continue // when a hold-down began: see restartholddown_test.go
		}
		out = append(out, stored{m.Subject, e, seq})
	}
	return out
}

// history renders the transitions of STATE as "subject-suffix:to" lines.
func history(t testing.TB, srv *eventstest.Server) []string {
	var out []string
	for _, s := range stateOf(t, srv) {
		if strings.HasPrefix(s.Subject, "detour.state.override.") {
			continue
		}
		var tr events.Transition
		if err := s.Env.Payload(&tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(s.Subject, "detour.state.")+":"+string(tr.To))
	}
	return out
}

func waitHistory(t testing.TB, srv *eventstest.Server, want ...string) {
	t.Helper()
	var got []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = history(t, srv)
		return reflect.DeepEqual(got, want)
	}, "STATE history is %q, want %q", &got, want)
}

func TestAFailingEndpointGoesDownOnTheResultThatCompletesFallAndTakesItsPoolWithIt(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "eu"}

	west.send("shop", "west", "w1", true)
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	west.send("shop", "west", "w1", false)
	west.send("shop", "west", "w1", false)
	last := west.send("shop", "west", "w1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	st := stateOf(t, srv)
	down, pool := st[2], st[3]
	var tr events.Transition
	if err := down.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if down.Env.Type != events.TypeEndpointDown || down.Env.Cause != last || down.Env.Source != "decider/a" {
		t.Errorf("down event = %s caused by %q from %q; want %s caused by %q from decider/a", down.Env.Type, down.Env.Cause, down.Env.Source, events.TypeEndpointDown, last)
	}
	want := events.Transition{App: "shop", Pool: "west", Endpoint: "w1", Address: "127.0.0.11:8081",
		From: events.StatusUp, To: events.StatusDown,
		Reason:     "eu: 3 consecutive failures (fall 3); 0 of 1 voting regions see it up (quorum 0.5)",
		Results:    []string{"eu-3", "eu-4", "eu-5"},
		Votes:      []events.Vote{{Region: "eu", Status: events.StatusDown}},
		Thresholds: events.Thresholds{Fall: 3, Rise: 2, Quorum: 0.5, StaleAfterMS: 3600000, IntervalMS: 1000}}
	if !reflect.DeepEqual(tr, want) {
		t.Errorf("down transition:\n got %+v\nwant %+v", tr, want)
	}
	var ptr events.Transition
	if err := pool.Env.Payload(&ptr); err != nil {
		t.Fatal(err)
	}
	if pool.Env.Cause != down.Env.ID || ptr.Reason != "w1 down: 0 of 1 endpoints serving, need 1" || ptr.Thresholds.MinAvailable != "1" {
		t.Errorf("pool down caused by %q (want the endpoint's %q), transition %+v", pool.Env.Cause, down.Env.ID, ptr)
	}
}

func TestTheLastPoolGoingDownSaysWhatTheAppAnswers(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, strings.Replace(shopYAML, "fqdn: shop.demo.test", "fqdn: shop.demo.test\n    when_all_down: fail_closed", 1)), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for _, pool := range []string{"west", "east"} {
		for range 3 {
			p.send("shop", pool, map[string]string{"west": "w1", "east": "e1"}[pool], false)
		}
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.east.e1:down", "pool.shop.east:down")
	var tr events.Transition
	if err := stateOf(t, srv)[3].Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if want := "e1 down: 0 of 1 endpoints serving, need 1; no pool of the app is available: when_all_down fail_closed answers no records"; tr.Reason != want {
		t.Errorf("last pool down: reason %q, want %q", tr.Reason, want)
	}
}

func TestGarbageOnProbeSubjectsIsCountedAndDecidesNothing(t *testing.T) {
	srv := eventstest.Start(t)
	r := start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	ctx := context.Background()
	for _, raw := range []string{`garbage`, `{}`, `{"type":"detour.endpoint.up.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":[1,2]}`} {
		if _, err := srv.JS.Publish(ctx, "detour.probe.eu.shop.west.w1", []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 3 {
		p.send("shop", "west", "nope", false) // an endpoint the configuration lacks
		p.send("shop", "nope", "w1", false)   // a pool it lacks
		p.send("shop", "west", "w1.x", false) // a name that is not a subject token
		p.send("other", "west", "w1", false)  // an app it lacks
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return r.stats.Malformed.Load() == 4 && r.stats.Unknown.Load() == 12
	}, "malformed %d (want 4), unknown %d (want 12)", r.stats.Malformed.Load, r.stats.Unknown.Load)
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
}

func TestAProbeBatchIsFoldedResultByResult(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	for i := range 3 {
		b := events.ProbeBatch{Region: "us", Prober: "p1", Results: []events.ProbeResult{
			{At: time.Now(), App: "shop", Pool: "west", Endpoint: "w1", OK: false},
			{At: time.Now(), App: "shop", Pool: "east", Endpoint: "e1", OK: true},
		}}
		e, _ := events.New(events.TypeProbeBatchCompleted, "prober/us/p1", time.Now(), b)
		if _, err := events.Publish(context.Background(), srv.JS, events.ProbeBatchSubject("us", "p1"), e); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			waitHistory(t, srv, "endpoint.shop.east.e1:up", "pool.shop.east:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
			var tr events.Transition
			if err := stateOf(t, srv)[2].Env.Payload(&tr); err != nil {
				t.Fatal(err)
			}
			if want := e.ID + "/0"; len(tr.Results) != 3 || tr.Results[2] != want || tr.Votes[0].Region != "us" {
				t.Errorf("batch transition results %v votes %v; want the third ending in %s, region us", tr.Results, tr.Votes, want)
			}
		}
	}
}

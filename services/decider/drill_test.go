package decider_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drillEvent records one event of drill id on DRILLS and returns its sequence there.
func drillEvent(t *testing.T, srv *eventstest.Server, id, typ string, data any) uint64 {
	t.Helper()
	e, err := events.New(typ, "drill/test", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), srv.JS, events.DrillSubject(id), e)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func startDrill(t *testing.T, srv *eventstest.Server, id string, f events.Failure) {
	t.Helper()
	drillEvent(t, srv, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: id, By: "test", RollbackAt: time.Now().Add(time.Hour)})
	drillEvent(t, srv, id, events.TypeDrillStepStarted, events.DrillStep{Step: "fail " + f.String(), Failures: []events.Failure{f}})
}

func TestADrilledPoolIsSeenDownUntilTheDrillRollsBack(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "local"}
	west.send("shop", "west", "w1", true)
	west.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")

	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")
	last := stateOf(t, srv)[2]
	var tr events.Transition
	if err := last.Env.Payload(&tr); err != nil || !strings.HasPrefix(tr.Reason, "drill d1: simulated failure of pool shop/west") {
		t.Errorf("the drilled transition's reason is %q (%v)", tr.Reason, err)
	}
	west.send("shop", "west", "w1", true) // probes still pass: the failure is simulated

	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w1:up", "pool.shop.west:up")
}

func TestADrilledRegionStopsVoting(t *testing.T) {
	srv := eventstest.Start(t)
	// Every voting region must see the endpoint up (quorum 1); a silent region stops voting
	// after 750ms.
	doc := strings.Replace(strings.Replace(shopYAML, "stale_after: 1h", "stale_after: 750ms", 1),
		"interval: 1s, timeout: 500ms", "interval: 250ms, timeout: 200ms", 1)
	doc = "regions: [us-west, us-east]\n" + strings.Replace(doc, "    check:", "    quorum: 1\n    check:", 1)
	start(t, srv.JS, eventstest.Config(t, doc), "decider/a")
	west := &prober{t: t, js: srv.JS, region: "us-west"}
	east := &prober{t: t, js: srv.JS, region: "us-east"}
	for range 3 {
		west.send("shop", "west", "w1", false)
		east.send("shop", "west", "w1", true)
	}
	// us-east reaches rise before us-west reaches fall: up, then down when us-west votes.
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	// us-west's failures stop counting: once it is stale, us-east alone votes, and sees it up.
	startDrill(t, srv, "d2", events.Failure{Kind: events.FailRegion, Region: "us-west"})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		west.send("shop", "west", "w1", false)
		east.send("shop", "west", "w1", true)
		time.Sleep(50 * time.Millisecond) // the probers' pace: a result every 50ms from each region
		h := history(t, srv)
		return len(h) == 6 && h[4] == "endpoint.shop.west.w1:up"
	}, "the endpoint comes up once us-west's votes are ignored: %q", func() []string { return history(t, srv) })
}

// TestADrillRolledBackAfterARestartReturnsAHealthyEndpointAtOnce: w1 is up and passes every
// 50 ms (hold_down 3s) when a drill fails its pool, which takes it down. The decider is restarted
// while the drill is in force, and the drill is rolled back: w1 comes up at once, as a decider
// that ran through the drill brings it up, and as detour replay decides it. The down STATE
// recorded last is the drill's, not the probes' view, so it begins no hold-down.
func TestADrillRolledBackAfterARestartReturnsAHealthyEndpointAtOnce(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1, p := drilledDown(t, srv, cfg)
	d1.stop()
	p.send("shop", "west", "w1", true)
	start(t, srv.JS, cfg, "decider/a")
	p.send("shop", "west", "w1", true)
	rolledBack := stamp(t, srv, events.StreamDrills,
		drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	got := passUntilTransitions(t, srv, p, 3, 5*time.Second, "5 s after the drill rolled back: want it up again")
	wantUpAtRollback(t, srv, cfg, got, rolledBack)
}

// drilledDown starts decider/a under cfg, has w1 pass until it is up, and starts drill d1,
// which fails its pool; w1 passes every 50 ms, as configured, until the drill takes it down.
func drilledDown(t *testing.T, srv *eventstest.Server, cfg *config.Config) (*replica, *prober) {
	t.Helper()
	d1 := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	passUntilTransitions(t, srv, p, 2, 5*time.Second, "5 s after the drill began: want up, then down by the drill")
	return d1, p
}

// wantUpAtRollback fails the test unless w1's last transition, of got, is up within 1 s of the
// drill's rollback at rolledBack, caused as detour replay under cfg decides it.
func wantUpAtRollback(t *testing.T, srv *eventstest.Server, cfg *config.Config, got []string, rolledBack time.Time) {
	t.Helper()
	up, _ := lastW1(t, srv)
	if up.Type != events.TypeEndpointUp || up.Time.Sub(rolledBack) > time.Second {
		t.Errorf("w1's transitions are %q: want it up within 1 s of the drill's rollback at %s", got, rolledBack.Format(time.RFC3339Nano))
	}
	if verdict, cause := replayedLastUp(t, srv, cfg); verdict != "same" || cause != up.Cause {
		t.Errorf("detour replay brings w1 up %s, caused by %s; STATE's last up was caused by %s", verdict, cause, up.Cause)
	}
}

// lastW1 returns the last transition STATE holds on w1.
func lastW1(t *testing.T, srv *eventstest.Server) (events.Envelope, bool) {
	t.Helper()
	var last events.Envelope
	var ok bool
	for _, s := range stateOf(t, srv) {
		if _, tr := events.TransitionStatus(s.Env.Type); tr && s.Subject == events.EndpointStateSubject("shop", "west", "w1") {
			last, ok = s.Env, true
		}
	}
	return last, ok
}

// TestADrillRolledBackWhileNoDeciderRanReturnsAHealthyEndpointAtOnce: as above, but the drill
// is rolled back while the decider is stopped: the decider started afterwards brings w1 up as
// of the rollback, not a hold_down after the results it reads back.
func TestADrillRolledBackWhileNoDeciderRanReturnsAHealthyEndpointAtOnce(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, holdDownYAML())
	d1, p := drilledDown(t, srv, cfg)
	d1.stop()
	p.send("shop", "west", "w1", true)
	rolledBack := stamp(t, srv, events.StreamDrills,
		drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	p.send("shop", "west", "w1", true)
	start(t, srv.JS, cfg, "decider/a")
	got := passUntilTransitions(t, srv, p, 3, 5*time.Second, "5 s after the drill rolled back: want it up again")
	wantUpAtRollback(t, srv, cfg, got, rolledBack)
}

// TestARealOutageDuringADrillIsToldAsTheProbesWhenTheDrillEnds: a drill fails pool west, which
// takes w1 (and the pool) down; w1's own checks then fail for real. Rolled back, the drill leaves
// w1 down, as before it ended: STATE's last word on w1 and on west was the drill's, and the outage
// was told as a drill's until someone looked. The decider re-states both, down to down, without
// the drill's mark and with the probes' reason, as detour replay decides it.
func TestARealOutageDuringADrillIsToldAsTheProbesWhenTheDrillEnds(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, shopYAML)
	start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	drilled := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down"}
	waitHistory(t, srv, drilled...)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	rolledBack := drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	waitHistory(t, srv, append(drilled, "endpoint.shop.west.w1:down", "pool.shop.west:down")...)

	all := stateOf(t, srv)
	for _, s := range all[len(all)-2:] {
		var tr events.Transition
		if err := s.Env.Payload(&tr); err != nil {
			t.Fatal(err)
		}
		if tr.From != events.StatusDown || tr.Drill != "" || strings.Contains(tr.Reason, "simulated") {
			t.Errorf("%s after the rollback: %s → %s, drill %q, reason %q; want down → down, no drill, the probes' reason",
				s.Subject, tr.From, tr.To, tr.Drill, tr.Reason)
		}
		if s.Subject == events.EndpointStateSubject("shop", "west", "w1") && !strings.Contains(tr.Reason, "eu: 3 consecutive failures") {
			t.Errorf("w1's reason after the rollback is %q: want it to name eu's 3 consecutive failures", tr.Reason)
		}
	}
	if w1, _ := lastW1(t, srv); w1.Time.Before(stamp(t, srv, events.StreamDrills, rolledBack)) {
		t.Errorf("w1's re-statement is dated %s, before the rollback", w1.Time.Format(time.RFC3339Nano))
	}
	replaysW1Restated(t, srv, cfg)
}

// replaysW1Restated fails the test unless detour replay under cfg re-decides w1's three
// transitions as STATE holds them: up, the drill's down, and the probes' re-statement.
func replaysW1Restated(t *testing.T, srv *eventstest.Server, cfg *config.Config) {
	t.Helper()
	lines, out := decider.Replay(t, srv, cfg, false)
	var paired int
	for _, l := range lines {
		if l.Kind != "what_if" || l.Endpoint != "w1" {
			continue
		}
		paired++
		if l.Verdict != "same" || l.Recorded.Reason != l.WhatIf.Reason || l.Recorded.Cause != l.WhatIf.Cause {
			t.Errorf("detour replay differs from STATE on w1 %s: %s", l.To, out)
		}
	}
	if paired != 3 {
		t.Errorf("detour replay pairs %d transitions of w1, want 3 (up, the drill's down, the probes' down):\n%s", paired, out)
	}
}

// TestADrillEndingOnAnEndpointDownBeforeItAddsNothing: w1 is down for real when a drill fails its
// pool, and still down when it is rolled back: STATE's last word was the probes' all along, and
// the drill adds no transition, before or after.
func TestADrillEndingOnAnEndpointDownBeforeItAddsNothing(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, shopYAML)
	start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	// The endpoint coming up afterwards shows the decider folded the rollback, and nothing before.
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w1:up", "pool.shop.west:up")
}

// TestAPoolADrillTookDownIsRestatedWhenItStaysDownForAnotherEndpointsOutage: west needs both w1
// and w2 (min_available 2); a drill fails w1, which takes west down; w2 then fails for real,
// which changes no pool status. The drill ends: w1 comes up (drill ended), west stays down for
// w2's outage, and is re-stated down to down, caused by w1's up: its last word was the drill's.
func TestAPoolADrillTookDownIsRestatedWhenItStaysDownForAnotherEndpointsOutage(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, `        endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`        min_available: 2
        endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}]`, 1)
	start(t, srv.JS, eventstest.Config(t, doc), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 2 {
		p.send("shop", "west", "w1", true)
		p.send("shop", "west", "w2", true)
	}
	before := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w2:up"} // w2 serves undecided
	waitHistory(t, srv, before...)
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailEndpoint, App: "shop", Pool: "west", Endpoint: "w1"})
	before = append(before, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitHistory(t, srv, before...)
	for range 3 {
		p.send("shop", "west", "w2", false)
	}
	before = append(before, "endpoint.shop.west.w2:down")
	waitHistory(t, srv, before...)
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	waitHistory(t, srv, append(before, "endpoint.shop.west.w1:up", "pool.shop.west:down")...)

	all := stateOf(t, srv)
	up, pool := all[len(all)-2], all[len(all)-1]
	var tr events.Transition
	if err := pool.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.From != events.StatusDown || pool.Env.Cause != up.Env.ID {
		t.Errorf("west after the rollback: %s → %s caused by %s; want down → down caused by w1's up %s", tr.From, tr.To, pool.Env.Cause, up.Env.ID)
	}
}

// TestARealOutageADrillOutlivedWhileNoDeciderRanIsRestatedAtTheStart: as
// TestARealOutageDuringADrillIsToldAsTheProbesWhenTheDrillEnds, but the decider stops before w1
// fails and the drill is rolled back, and starts after: STATE's last word on w1 is the drill's,
// which the decider restores and then lifts, re-stating w1 and west down as the probes'.
func TestARealOutageADrillOutlivedWhileNoDeciderRanIsRestatedAtTheStart(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, shopYAML)
	d := start(t, srv.JS, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	drilled := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down"}
	waitHistory(t, srv, drilled...)
	d.stop()
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	start(t, srv.JS, cfg, "decider/a")
	waitHistory(t, srv, append(drilled, "endpoint.shop.west.w1:down", "pool.shop.west:down")...)
	if w1, _ := lastW1(t, srv); w1.Cause == "" || strings.Contains(string(w1.Data), `"drill":`) {
		t.Errorf("w1's re-statement is %s: want no drill, and a cause", w1.Data)
	}
}

// TestADrillEndingBeforeAnyResultOfItsEndpointLeavesTheProbesToRestateItsDown: a drill fails
// pool west before any prober reported w1 (an endpoint just added, its probers not reporting
// yet), which takes w1 from unknown down, and ends before any result: nothing decides w1 then,
// and STATE's last word stays the drill's. w1's first results fail: the decider re-states it,
// and west, down to down as the probes'; before, it took them for a change from unknown to the
// down STATE records, not due, and the outage stayed the drill's.
func TestADrillEndingBeforeAnyResultOfItsEndpointLeavesTheProbesToRestateItsDown(t *testing.T) {
	srv := eventstest.Start(t)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "east", "e1", true)
	p.send("shop", "east", "e1", true)
	want := []string{"endpoint.shop.east.e1:up", "pool.shop.east:up"}
	waitHistory(t, srv, want...)
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	want = append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitHistory(t, srv, want...)
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	// DRILLS is folded in order: e1 down by d2 shows the decider lifted d1 before w1's results.
	startDrill(t, srv, "d2", events.Failure{Kind: events.FailPool, App: "shop", Pool: "east"})
	want = append(want, "endpoint.shop.east.e1:down", "pool.shop.east:down")
	waitHistory(t, srv, want...)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")...)
	w1, _ := lastW1(t, srv)
	var tr events.Transition
	if err := w1.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.From != events.StatusDown || tr.Drill != "" || !strings.HasPrefix(tr.Reason, decide.DrillOutlived+": eu: 3 consecutive failures") {
		t.Errorf("w1 re-stated %s → %s, drill %q, reason %q; want down → down, no drill, the probes' reason", tr.From, tr.To, tr.Drill, tr.Reason)
	}
}

// heldAppends is JetStream whose first append to subject, once armed is closed, is sent on held
// and stored only once release is closed: another writer's event stored meanwhile comes first.
type heldAppends struct {
	jetstream.JetStream
	subject        string
	armed, release chan struct{}
	held           chan events.Envelope
}

func (h heldAppends) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	h.hold(m)
	return h.JetStream.PublishMsgAsync(m, opts...)
}

func (h heldAppends) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	h.hold(m)
	return h.JetStream.PublishMsg(context.WithoutCancel(ctx), m, opts...)
}

func (h heldAppends) hold(m *nats.Msg) {
	select {
	case <-h.armed:
	default:
		return
	}
	if e, err := events.Decode(m.Data); err == nil && m.Subject == h.subject {
		select {
		case h.held <- e:
			<-h.release
		default:
		}
	}
}

// TestAReplicaLateToADrillsEndDoesNotRestateTheDownAnotherBroughtUp: two replicas fold the
// drill's end on either side of w1's recovery: decider/a (played by the test) had folded the
// passes and brings w1 up (drill ended); decider/b, which folded the failures during the drill
// but not the passes yet, re-states w1's down at the same end, and a's up is stored first. b's
// re-statement was of the drill's down, which STATE no longer holds: it is not due, and b,
// once it folds the passes, agrees with STATE. Before, b appended it over a's up as a down: w1
// flapped, and its pool's pool_down paged an outage that was over.
func TestAReplicaLateToADrillsEndDoesNotRestateTheDownAnotherBroughtUp(t *testing.T) {
	srv := eventstest.Start(t)
	w1 := events.EndpointStateSubject("shop", "west", "w1")
	js := heldAppends{JetStream: srv.JS, subject: w1, armed: make(chan struct{}), release: make(chan struct{}), held: make(chan events.Envelope, 1)}
	start(t, js, eventstest.Config(t, shopYAML), "decider/b")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for _, ep := range []string{"w1", "w1", "e1", "e1"} {
		p.send("shop", map[string]string{"w1": "west", "e1": "east"}[ep], ep, true)
	}
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up"}
	waitHistory(t, srv, want...)
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	want = append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitHistory(t, srv, want...)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	var seq uint64
	for _, s := range stateOf(t, srv) {
		if s.Subject == w1 {
			seq = s.Seq
		}
	}
	close(js.armed)
	rolledBack := stamp(t, srv, events.StreamDrills, drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"}))
	select {
	case e := <-js.held:
		if e.Type != events.TypeEndpointDown {
			t.Fatalf("b's append at the drill's end is %s, want its re-statement of w1's down", e.Type)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b appended nothing on w1 within 5 s of the drill's end")
	}
	up, err := events.New(events.TypeEndpointUp, "decider/a", rolledBack, events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		Address: "127.0.0.11:8081", From: events.StatusDown, To: events.StatusUp, Reason: decide.DrillEnded + "; 1 of 1 voting regions see it up (quorum 0.5)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Append(context.Background(), srv.JS, w1, up, seq); err != nil {
		t.Fatal(err)
	}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	close(js.release)
	want = append(want, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	waitHistory(t, srv, want...)
	// DRILLS and PROBES are folded in order: e1 down by d2 shows b folded w1's passes.
	startDrill(t, srv, "d2", events.Failure{Kind: events.FailPool, App: "shop", Pool: "east"})
	waitHistory(t, srv, append(want, "endpoint.shop.east.e1:down", "pool.shop.east:down")...)
}

// TestARealOutageDuringADrillIsRestatedWhenAConfigurationVersionCameMeanwhile: as
// TestARealOutageDuringADrillIsToldAsTheProbesWhenTheDrillEnds, but a configuration version
// that adds an app comes while the drill holds w1 down. The new version keeps what the decider
// knew of w1 and west, that their down was the drill's too: before, it forgot it, and the drill's
// end re-stated neither (the outage told as the drill's, as before cbb93ff).
func TestARealOutageDuringADrillIsRestatedWhenAConfigurationVersionCameMeanwhile(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "decider/a", func(o *decider.Options) { o.Configs = configs })
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	waitHistory(t, srv, want...)
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	want = append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitHistory(t, srv, want...)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	configs <- eventstest.Config(t, shopYAML+`  - name: blog
    fqdn: blog.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 1, rise: 2, stale_after: 1h}
    pools: [{name: main, endpoints: [{name: b1, address: "127.0.0.13:80"}]}]
`)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		p.send("blog", "main", "b1", false)
		return len(history(t, srv)) > len(want)
	}, "blog's results to be decided")
	want = append(want, "endpoint.blog.main.b1:down", "pool.blog.main:down")
	waitHistory(t, srv, want...)
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	waitHistory(t, srv, append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")...)
}

// cutOff is JetStream that loses NATS for every append to subject once cut is closed, until
// mended is (nil: never), and counts them: the appends to other subjects go on.
type cutOff struct {
	jetstream.JetStream
	subject     string
	cut, mended chan struct{}
	refused     *atomic.Int64
}

func (c cutOff) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if c.lost(m) {
		return nil, nats.ErrConnectionClosed
	}
	return c.JetStream.PublishMsgAsync(m, opts...)
}

func (c cutOff) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if c.lost(m) {
		return nil, nats.ErrConnectionClosed
	}
	return c.JetStream.PublishMsg(ctx, m, opts...)
}

func (c cutOff) lost(m *nats.Msg) bool {
	select {
	case <-c.mended:
		return false
	case <-c.cut:
	default:
		return false
	}
	if m.Subject != c.subject {
		return false
	}
	c.refused.Add(1)
	return true
}

// TestAPoolsRestatementADeciderDiedBeforeIsAppendedByTheNextOne: as
// TestARealOutageDuringADrillIsToldAsTheProbesWhenTheDrillEnds, but the decider loses NATS
// for west's appends when the drill ends: it re-states w1, not west, and stops. The decider
// started next reads STATE's last word on west, the drill's down (it carries the drill, as w1's
// did), while w1's is the probes' already: it re-states west, down to down, caused by w1's
// re-statement, without the drill. Before, the pool's down named only w1's drilled down as its
// cause, which w1's re-statement had replaced: nothing told the new decider west's down was the
// drill's, it re-stated nothing, and the outage never paged.
func TestAPoolsRestatementADeciderDiedBeforeIsAppendedByTheNextOne(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, shopYAML)
	west := events.PoolStateSubject("shop", "west")
	js := cutOff{JetStream: srv.JS, subject: west, cut: make(chan struct{}), refused: &atomic.Int64{}}
	d := start(t, js, cfg, "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	waitHistory(t, srv, want...)
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	want = append(want, "endpoint.shop.west.w1:down", "pool.shop.west:down")
	waitHistory(t, srv, want...)
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	close(js.cut)
	drillEvent(t, srv, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "test", Reason: "requested"})
	want = append(want, "endpoint.shop.west.w1:down")
	waitHistory(t, srv, want...)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.refused.Load() > 0 }, "decider/a did not try west's re-statement")
	d.stop()

	start(t, srv.JS, cfg, "decider/a")
	waitHistory(t, srv, append(want, "pool.shop.west:down")...)
	all := stateOf(t, srv)
	restated, pool := all[len(all)-2], all[len(all)-1]
	var tr events.Transition
	if err := pool.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.From != events.StatusDown || tr.Drill != "" || pool.Env.Cause != restated.Env.ID {
		t.Errorf("west after the restart: %s → %s, drill %q, caused by %s; want down → down, no drill, caused by w1's re-statement %s",
			tr.From, tr.To, tr.Drill, pool.Env.Cause, restated.Env.ID)
	}
	if err := all[3].Env.Payload(&tr); err != nil || tr.Drill != "d1" {
		t.Errorf("west's down by the drill carries drill %q (%v), want d1", tr.Drill, err)
	}
	replaysW1Restated(t, srv, cfg)
}

// TestAPoolDownForARealOutageBeforeADrillIsNotTheDrills: west needs both w1 and w2
// (min_available 2). w2 fails for real while the decider cannot append to west: west's down,
// which w2's outage made, waits for NATS. A drill then fails w1, and NATS comes back: west's down
// is the outage's (w2's down is its cause, it carries no drill), paged as one, not the drill's
// (told [drill d1] until the drill ends). Before, it was built on the newest endpoint event, w1's
// drilled down, and marked with the drill.
func TestAPoolDownForARealOutageBeforeADrillIsNotTheDrills(t *testing.T) {
	srv := eventstest.Start(t)
	doc := strings.Replace(shopYAML, `        endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`        min_available: 2
        endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}]`, 1)
	west := events.PoolStateSubject("shop", "west")
	js := cutOff{JetStream: srv.JS, subject: west, cut: make(chan struct{}), mended: make(chan struct{}), refused: &atomic.Int64{}}
	start(t, js, eventstest.Config(t, doc), "decider/a")
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for range 2 {
		p.send("shop", "west", "w1", true)
		p.send("shop", "west", "w2", true)
	}
	want := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w2:up"}
	waitHistory(t, srv, want...)
	close(js.cut)
	for range 3 {
		p.send("shop", "west", "w2", false)
	}
	want = append(want, "endpoint.shop.west.w2:down")
	waitHistory(t, srv, want...)
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.refused.Load() > 0 }, "decider/a did not try west's down")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailEndpoint, App: "shop", Pool: "west", Endpoint: "w1"})
	want = append(want, "endpoint.shop.west.w1:down")
	waitHistory(t, srv, want...)
	close(js.mended)
	waitHistory(t, srv, append(want, "pool.shop.west:down")...)

	all := stateOf(t, srv)
	w2, pool := all[3], all[len(all)-1]
	var tr events.Transition
	if err := pool.Env.Payload(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.Drill != "" || pool.Env.Cause != w2.Env.ID {
		t.Errorf("west's down: drill %q, caused by %s; want no drill, caused by w2's down %s", tr.Drill, pool.Env.Cause, w2.Env.ID)
	}
}

package drill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/cli"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/drill"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/replay"
	"github.com/detourdev/detour/services/up"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// stack is Detour in process with two backends and two edges.
type stack struct {
	*up.Stack
	js         jetstream.JetStream
	configPath string
	west       *demo.Backend
}

func startStack(t *testing.T) *stack {
	t.Helper()
	west, err := demo.StartBackend("west", "127.0.0.71:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = west.Close() })
	east, err := demo.StartBackend("east", "127.0.0.72:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = east.Close() })
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms, fall: 3, rise: 2}
    pools:
      - {name: west, region: us-west, endpoints: [{address: %[1]q}]}
      - {name: east, region: us-east, endpoints: [{address: %[2]q}]}
  - name: www
    fqdn: www.demo.test
    ttl: 5
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms, fall: 3, rise: 2}
    ingress: [edge-a, edge-b]
    pools:
      - {name: west, region: us-west, endpoints: [{address: %[1]q}]}
      - {name: east, region: us-east, endpoints: [{address: %[2]q}]}
edges:
  - {name: edge-a, region: us-west, hostname: edge-a.demo.test, address: 127.0.0.73, heartbeat: {interval: 250ms, fall: 3},
     apps: [{app: www, listen: %[3]q, secondary: edge-b}]}
  - {name: edge-b, region: us-east, hostname: edge-b.demo.test, address: 127.0.0.74, heartbeat: {interval: 250ms, fall: 3},
     apps: [{app: www, listen: %[4]q, secondary: edge-a}]}
`, west.Addr(), east.Addr(), stacktest.FreePort(t, "127.0.0.73"), stacktest.FreePort(t, "127.0.0.74"))
	st, js, path := stacktest.Start(t, doc)
	s := &stack{Stack: st, js: js, configPath: path, west: west}
	// Every endpoint and edge is decided before a drill starts.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		v, _, err := drill.ReadState(context.Background(), js, st.Config)
		if err != nil {
			return false
		}
		for _, a := range st.Config.Apps {
			for _, p := range a.Pools {
				if v.Endpoint(a.Name, p.Name, p.Endpoints[0].Name) != events.StatusUp {
					return false
				}
			}
		}
		return v.Edge("edge-a") == events.StatusUp && v.Edge("edge-b") == events.StatusUp
	}, "every endpoint and edge is up")
	return s
}

func (s *stack) options(t *testing.T, doc string) drill.Options {
	t.Helper()
	f, err := drill.Parse("drill.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return drill.Options{JS: s.js, Config: s.Config, File: f, DNS: []string{s.DNSAddr}, By: "tester",
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
}

// answer is what the stack's DNS server answers for name now.
func (s *stack) answer(t *testing.T, name string) string {
	t.Helper()
	sp, err := drill.PlanFor(context.Background(), s.js, s.Config, &drill.File{Name: "probe", Steps: nil})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sp.Before.Answers {
		if a.What == name {
			return a.Answer
		}
	}
	return ""
}

func TestADrillSwitchesWithinItsRTOScoresItAndRollsBack(t *testing.T) {
	s := startStack(t)
	sc, err := drill.Run(context.Background(), s.options(t, `
name: lose-west
steps:
  - {fail: pool shop/west, rto: 2s}
  - {fail: edge edge-a, rto: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Pass || len(sc.Steps) != 2 || !sc.Restored.Pass || sc.RolledBack != "completed by tester" {
		t.Fatalf("scorecard: %+v", sc)
	}
	var text strings.Builder
	_ = sc.WriteText(&text)
	if !strings.Contains(text.String(), "request via edge-b www: expected served, observed served") {
		t.Errorf("the scorecard has no request through edge-b once edge-a was failed:\n%s", text.String())
	}
	for i, want := range []string{"shop.demo.test.: expected " + host(s.Config.Apps[0].Pools[1].Endpoints[0].Address), "www.demo.test.: expected CNAME edge-b.demo.test."} {
		var text strings.Builder
		_ = sc.WriteText(&text)
		if !strings.Contains(text.String(), want) {
			t.Errorf("step %d: the scorecard lacks %q:\n%s", i, want, text.String())
		}
		if sc.Steps[i].Switch <= 0 || time.Duration(sc.Steps[i].Switch) > 2*time.Second {
			t.Errorf("step %d switched in %s", i, sc.Steps[i].Switch)
		}
	}
	// The replay shows the drill's steps and the transitions they caused, and re-deciding with
	// the configured thresholds gives them back exactly.
	settings, err := replay.ParseSettings("fall=3,rise=2")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := replay.Run(context.Background(), s.js, replay.Options{Config: s.Config, WhatIf: &settings, Format: "text"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"step_started fail pool shop/west", "simulated failure of pool shop/west", "simulated failure of edge edge-a", "rolled_back completed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the replay lacks %q:\n%s", want, out.String())
		}
	}
	w := replay.NewWhatIf(s.Config, settings, time.Time{}, time.Time{})
	if err := replay.Read(context.Background(), s.js, replay.Window{}, w.Add); err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Compare(time.Now()).Pairs {
		if p.Verdict() != "same" {
			t.Errorf("re-deciding with the configured thresholds: %s/%s/%s → %s is %s", p.App, p.Pool, p.Endpoint, p.To, p.Verdict())
		}
	}
	// The real backend was never touched: it still answers.
	resp, err := http.Get("http://" + s.west.Addr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("the west backend: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

func TestAStepSlowerThanItsRTOFailsAndSaysWhy(t *testing.T) {
	s := startStack(t)
	// The clock starts before the step is recorded, so no switch is seen within a nanosecond
	// (one millisecond was met on loopback now and then).
	sc, err := drill.Run(context.Background(), s.options(t, "name: tight\nsteps: [{fail: pool shop/west, rto: 1ns}]"))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Pass || sc.Steps[0].Pass || !strings.Contains(sc.Steps[0].Reason, "over the rto of 1ns") {
		t.Errorf("step: pass %v, reason %q; want a failure over the rto of 1ns", sc.Steps[0].Pass, sc.Steps[0].Reason)
	}
}

func TestADrillIsRefusedWhileTheDNSServersDoNotAnswerWhatSTATESays(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: early\nsteps: [{fail: pool shop/west, rto: 1s}]")
	o.DNS = []string{stacktest.FreePort(t, "127.0.0.75")} // nothing answers there
	_, err := drill.Run(context.Background(), o)
	if !errors.Is(err, drill.ErrRefused) || !strings.Contains(err.Error(), `shop.demo.test. is "error:`) {
		t.Fatalf("err = %v, want a refusal naming shop.demo.test.'s answer", err)
	}
	if v, err := drill.ReadDrills(context.Background(), s.js); err != nil || len(v.Active()) != 0 {
		t.Errorf("active drills after the refusal: %v (%v), want none", v.Active(), err)
	}
}

func TestADrillRollsBackByItselfAfterMaxDuration(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: long\nmax_duration: 1500ms\nsteps: [{fail: pool shop/west, rto: 1s}]")
	o.Hold = time.Minute
	start := time.Now()
	sc, err := drill.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sc.RolledBack, "max_duration by controller-") || time.Since(start) > 20*time.Second {
		t.Errorf("rolled back %q after %s, want by a controller at max_duration", sc.RolledBack, time.Since(start))
	}
	if !sc.Restored.Pass {
		t.Errorf("the answers did not return: %+v", sc.Restored)
	}
}

func TestAnOperatorsRollbackDuringTheHoldEndsTheDrillThoughTheRunnerRenewedItsLeaseAfter(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: held\nsteps: [{fail: pool shop/west, rto: 2s}]")
	o.Hold = time.Minute
	ids := make(chan string, 1)
	o.Started = func(id string) { ids <- id }
	type result struct {
		sc  drill.Scorecard
		err error
	}
	done := make(chan result, 1)
	go func() { sc, err := drill.Run(context.Background(), o); done <- result{sc, err} }()
	id := <-ids
	east := host(s.Config.Apps[0].Pools[1].Endpoints[0].Address)
	eventstest.Eventually(t, 10*time.Second, func() bool { return s.answer(t, "shop.demo.test.") == east },
		"the drill fails shop/west")
	if err := drill.Rollback(context.Background(), s.js, id, "operator", nil); err != nil {
		t.Fatal(err)
	}
	// The runner renews its lease every second, beside the hold: one renewal lands right after
	// the rollback, as it did one run in ten at a human pace.
	renewal, err := events.New(events.TypeDrillRenewed, "drill/tester", time.Now(), events.DrillRenewed{By: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), s.js, events.DrillSubject(id), renewal); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.sc.RolledBack != "requested by operator" {
			t.Errorf("the drill ended with %q (%v), want rolled back as requested by operator", r.sc.RolledBack, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the drill still holds its failures 20s after the operator rolled it back (hold 1m)")
	}
}

// TestDrillRunnerChild is the runner TestADrillWhoseRunnerIsKilledIsRolledBackByAController
// starts in a child process and kills.
func TestDrillRunnerChild(t *testing.T) {
	args := os.Getenv("DETOUR_DRILL_CHILD")
	if args == "" {
		t.Skip("the child process of TestADrillWhoseRunnerIsKilledIsRolledBackByAController")
	}
	os.Exit(cli.Main(strings.Split(args, " "), os.Stdout, os.Stderr))
}

func TestADrillWhoseRunnerIsKilledIsRolledBackByAController(t *testing.T) {
	s := startStack(t)
	// A second controller replica: either may carry the rollback out.
	eventstest.Run(t, "controller-2", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: s.js, Config: s.Config, Name: "controller-2",
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	})
	file := filepath.Join(t.TempDir(), "drill.yaml")
	if err := os.WriteFile(file, []byte("name: orphan\nsteps: [{fail: pool shop/west, rto: 2s}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestDrillRunnerChild$")
	child.Env = append(os.Environ(), "DETOUR_NATS_NKEY="+s.NATSCredentials.File, "DETOUR_DRILL_CHILD="+strings.Join([]string{"drill", "run", file, "--nats", s.NATSURL,
		"--config", s.configPath, "--dns", s.DNSAddr, "--hold", "1m", "--log-format", "json"}, " "))
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	east := host(s.Config.Apps[0].Pools[1].Endpoints[0].Address)
	eventstest.Eventually(t, 10*time.Second, func() bool { return s.answer(t, "shop.demo.test.") == east },
		"the drill's runner fails shop/west")
	var id string
	if v, err := drill.ReadDrills(context.Background(), s.js); err == nil && len(v.Active()) == 1 {
		id = v.Active()[0].Started.ID
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed := time.Now()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		v, err := drill.ReadDrills(context.Background(), s.js)
		return err == nil && v.Ended(id)
	}, "the drill %s rolls back after its runner was killed", id)
	st, err := s.js.Stream(context.Background(), events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	e, _, _, err := events.Last(context.Background(), st, events.DrillSubject(id))
	var rb events.DrillRolledBack
	if err != nil || e.Payload(&rb) != nil || rb.Reason != "runner_lost" || !strings.HasPrefix(rb.By, "controller-") {
		t.Errorf("the rollback: %+v (%v), want runner_lost by a controller", rb, err)
	}
	west := host(s.Config.Apps[0].Pools[0].Endpoints[0].Address)
	eventstest.Eventually(t, 5*time.Second, func() bool { return s.answer(t, "shop.demo.test.") == west },
		"shop answers west again after the rollback")
	t.Logf("rolled back %s after the runner was killed (lease 3s)", time.Since(killed).Round(time.Millisecond))
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }

func TestOfTwoDrillRunsStartedTogetherOnOneAppExactlyOneRuns(t *testing.T) {
	s := startStack(t)
	start := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan string, 2)
	errs := make([]error, 2)
	// A drill that got its app holds it, in Started, until the other has tried too (refused,
	// or started as well): one that ended first would hand the app on, and two drills one after
	// the other are not the race this is about.
	returned, both, release := make(chan struct{}, 2), make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	for i, name := range []string{"first", "second"} {
		o := s.options(t, "name: "+name+"\nsteps: [{fail: pool shop/west, rto: 2s}]")
		o.By = name + "@host"
		o.Started = func(id string) {
			started <- id
			if runs.Add(1) == 2 {
				close(both)
			}
			<-release
		}
		wg.Go(func() {
			<-start
			_, errs[i] = drill.Run(context.Background(), o)
			returned <- struct{}{}
		})
	}
	close(start)
	select {
	case <-returned:
	case <-both:
	}
	close(release)
	wg.Wait()
	close(started)
	var ran []string
	for id := range started {
		ran = append(ran, id)
	}
	if len(ran) != 1 || (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("drills started %v, errors %v; want exactly one run", ran, errs)
	}
	refused := errs[0]
	if refused == nil {
		refused = errs[1]
	}
	if !errors.Is(refused, drill.ErrRefused) || !strings.Contains(refused.Error(), "app shop") || !strings.Contains(refused.Error(), "drill "+ran[0]) {
		t.Errorf("the refused drill says %q; want it to name app shop and drill %s", refused, ran[0])
	}
}

func TestTheRecordedStateCarriesEachEndpointsVotesForThePlan(t *testing.T) {
	s := startStack(t)
	_, votes, err := drill.ReadState(context.Background(), s.js, s.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Config.Apps {
		for _, p := range a.Pools {
			for _, e := range p.Endpoints {
				if v := votes[events.EndpointStateSubject(a.Name, p.Name, e.Name)]; len(v) == 0 {
					t.Errorf("no votes read for %s/%s/%s", a.Name, p.Name, e.Name)
				}
			}
		}
	}
}

// electingAfter is a client of a cluster whose DRILLS loses its leader, for a while, as soon
// as an event of type after was stored through it.
type electingAfter struct {
	*eventstest.Electing
	after string
	lasts time.Duration
	once  sync.Once
	over  chan struct{}
}

func (e *electingAfter) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := e.Electing.PublishMsg(ctx, m, opts...)
	if env, derr := events.Decode(m.Data); err == nil && derr == nil && env.Type == e.after {
		e.once.Do(func() {
			e.On.Store(true)
			time.AfterFunc(e.lasts, func() { e.On.Store(false); close(e.over) })
		})
	}
	return ack, err
}

// runThroughElection runs a one-step drill whose DRILLS elects a leader for 1.5 s (less than
// the runner's 3 s lease) once an event of type after is stored.
func runThroughElection(t *testing.T, after string) drill.Scorecard {
	t.Helper()
	s := startStack(t)
	o := s.options(t, "name: elect\nsteps:\n  - {fail: pool shop/west, rto: 2s}\n")
	e := eventstest.NewElecting(s.js, "detour.drill.", false)
	e.StreamName = events.StreamDrills
	js := &electingAfter{Electing: e, after: after, lasts: 1500 * time.Millisecond, over: make(chan struct{})}
	o.JS = js
	sc, err := drill.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-js.over:
	case <-time.After(5 * time.Second):
		t.Fatal("DRILLS never elected")
	}
	return sc
}

func TestAStepIsTimedByItsSwitchWhileDRILLSElectsALeader(t *testing.T) {
	// The election begins as the step is recorded: the DNS servers and edges, which follow
	// STATE, switch as ever, and the step is timed by when they did.
	sc := runThroughElection(t, events.TypeDrillStepStarted)
	if len(sc.Steps) != 1 || !sc.Steps[0].Pass || sc.RolledBack != "completed by tester" {
		t.Fatalf("steps %+v, rolled back %q; want the one step switched within its rto, completed by tester", sc.Steps, sc.RolledBack)
	}
}

func TestADrillGoesOnThroughADRILLSElectionShorterThanItsLease(t *testing.T) {
	// The election begins as the drill's start is recorded: its step is recorded once DRILLS
	// has a leader again, and the drill runs as if nothing happened.
	sc := runThroughElection(t, events.TypeDrillStarted)
	if len(sc.Steps) != 1 || !sc.Steps[0].Pass || sc.RolledBack != "completed by tester" {
		t.Fatalf("steps %+v, rolled back %q; want the one step switched within its rto, completed by tester", sc.Steps, sc.RolledBack)
	}
}

// A DRILLS that stops answering once the drill started (JetStream without quorum, for good):
// the run stops within its Wait (the CLI's --timeout) for each event, where it tried its step
// for 15 s and its rollback for 10 s whatever --timeout said, then failed with "context
// deadline exceeded" alone (after its --hold, though no step was in force); and it says what
// the cluster recorded and what it did not.
func TestADrillWhoseDRILLSStopsAnsweringStopsWithinItsWaitSayingWhatWasRecorded(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: hang\nsteps:\n  - {fail: pool shop/west, rto: 2s}\n  - {fail: edge edge-a, rto: 2s}\n")
	e := eventstest.NewElecting(s.js, "detour.drill.", true)
	e.StreamName = events.StreamDrills
	o.JS = &electingAfter{Electing: e, after: events.TypeDrillStarted, lasts: time.Hour, over: make(chan struct{})}
	o.Wait = 2 * time.Second
	o.Lease = time.Minute // no controller rolls the drill back while the test looks
	o.Hold = time.Minute  // a step not recorded ends the drill: nothing to hold
	start := time.Now()
	_, err := drill.Run(t.Context(), o)
	took := time.Since(start)
	if err == nil {
		t.Fatal("the drill ran through a DRILLS that answered nothing")
	}
	for _, want := range []string{"did not answer within 2s", "recorded: the drill's start", "perhaps recorded, the cluster's answer lost: step 1 (fail pool shop/west), the rollback",
		"a controller rolls the drill back once DRILLS answers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Two waits of 2 s, the step's and the rollback's, and the look for a rollback between them.
	if took > 6*time.Second {
		t.Errorf("the run took %s against a DRILLS that answered nothing, want two waits of 2s", took.Round(time.Millisecond))
	}
}

// ackLostAt is a client of a cluster that stores the first event of type at but whose answer
// is lost (the node leading DRILLS died as it sent it), and then answers nothing on DRILLS.
type ackLostAt struct {
	*eventstest.Electing
	at   string
	once sync.Once
}

func (a *ackLostAt) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	stored := false
	if env, err := events.Decode(m.Data); err == nil && env.Type == a.at {
		a.once.Do(func() {
			if _, err := a.Electing.JetStream.PublishMsg(ctx, m, opts...); err == nil {
				stored = true
				a.On.Store(true)
			}
		})
	}
	if stored {
		<-ctx.Done() // the answer that never comes
		return nil, ctx.Err()
	}
	return a.Electing.PublishMsg(ctx, m, opts...)
}

// A step stored whose answer was lost, DRILLS silent after: the step's failure is in force
// (the DNS server answers the other pool) while the run stops, and its error must not tell the
// operator that the step was not recorded, where it said "not recorded: step 1 (fail pool
// shop/west), the rollback", as if nothing of the drill were in force.
func TestAStepStoredWhoseAnswerWasLostIsNotSaidToBeUnrecorded(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: lost\nsteps:\n  - {fail: pool shop/west, rto: 2s}\n")
	e := eventstest.NewElecting(s.js, "detour.drill.", true)
	e.StreamName = events.StreamDrills
	o.JS = &ackLostAt{Electing: e, at: events.TypeDrillStepStarted}
	o.Wait = time.Second
	o.Lease = time.Minute // no controller rolls the drill back while the test looks
	_, err := drill.Run(t.Context(), o)
	if err == nil {
		t.Fatal("the drill ran through a DRILLS that answered nothing")
	}
	east := host(s.Config.Apps[0].Pools[1].Endpoints[0].Address)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		q := new(dns.Msg).SetQuestion("shop.demo.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, s.DNSAddr)
		return err == nil && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == east
	}, "the DNS server answers east: the step is in force")
	if strings.Contains(err.Error(), "not recorded: step 1") {
		t.Errorf("error %q says step 1 was not recorded, and it is in force", err)
	}
	for _, want := range []string{"recorded: the drill's start", "perhaps recorded, the cluster's answer lost: step 1 (fail pool shop/west), the rollback"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// A run cancelled during its hold (Ctrl-C) records its rollback and returns once the answers
// are back, the failure lifted.
func TestACancelledRunRollsBackAndReturns(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: stop\nsteps:\n  - {fail: pool shop/west, rto: 2s}\n")
	o.Hold = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		sc  drill.Scorecard
		err error
	}
	done := make(chan result, 1)
	go func() {
		sc, err := drill.Run(ctx, o)
		done <- result{sc, err}
	}()
	east := host(s.Config.Apps[0].Pools[1].Endpoints[0].Address)
	eventstest.Eventually(t, 10*time.Second, func() bool { return s.answer(t, "shop.demo.test.") == east }, "the step in force")
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the cancelled run did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sc.RolledBack != "requested by tester" || !r.sc.Restored.Pass {
		t.Errorf("rolled back %q, return %+v; want requested by tester, the answers back", r.sc.RolledBack, r.sc.Restored)
	}
}

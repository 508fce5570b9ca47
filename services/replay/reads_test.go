package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/replay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishTransitions stores n transitions of shop/west/endpoint on STATE, up and down in turn,
// the last one down, as a decider would, all in flight at once.
func publishTransitions(t *testing.T, js jetstream.JetStream, endpoint string, n int) {
	t.Helper()
	subject := events.EndpointStateSubject("shop", "west", endpoint)
	for i := range n {
		typ, from, to := events.TypeEndpointDown, events.StatusUp, events.StatusDown
		if (n-i)%2 == 0 {
			typ, from, to = events.TypeEndpointUp, events.StatusDown, events.StatusUp
		}
		tr := events.Transition{App: "shop", Pool: "west", Endpoint: endpoint, From: from, To: to, Reason: "flapped"}
		e, err := events.New(typ, "decider/d1", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.PublishAsync(js, subject, e); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatalf("%d transitions of %s still unacknowledged", js.PublishAsyncPending(), endpoint)
	}
}

// oldTransitions is how long a history of transitions a window opens after in these tests.
const oldTransitions = 20000

// windowAfterTransitions records oldTransitions transitions of w2, the last one down, then a
// window: w1 going down, and w2 passing in every region. It replays the window with rise=1 on a
// connection of its own and returns what the replay shows (kind, endpoint, from → to) and how
// many messages the connection received.
func windowAfterTransitions(t *testing.T, srv *eventstest.Server) (shown []string, received uint64) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(flapYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	publishTransitions(t, srv.JS, "w2", oldTransitions)
	s, err := replay.ParseSettings("rise=1,hold_down=0s")
	if err != nil {
		t.Fatal(err)
	}
	// The window opens once its warm-up is clear of the old transitions.
	from := time.Now().Add(replay.Warmup(cfg, &s) + 10*time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(from) }, "the window to open")
	publishTransitions(t, srv.JS, "w1", 1)
	for _, region := range []string{"a", "b", "c"} {
		r := events.ProbeResult{ID: region + "-1", At: time.Now(), App: "shop", Pool: "west", Endpoint: "w2", Region: region, Prober: "p", Check: "http", OK: true}
		e, err := events.New(events.TypeProbeCompleted, "prober/"+region, r.At, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, srv.JS, events.ProbeSubject(region, "shop", "west", "w2"), e); err != nil {
			t.Fatal(err)
		}
	}

	nc, js := eventstest.ConnectJS(t, srv.URL)
	var out bytes.Buffer
	if err := replay.Run(ctx, js, replay.Options{Filter: replay.Filter{From: from}, Config: cfg, WhatIf: &s, Format: "json"}, &out); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var line struct {
			Kind, Endpoint string
			From, To       events.Status
			WhatIf         *replay.Change `json:"what_if"`
		}
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		if line.WhatIf != nil {
			line.From, line.To = line.WhatIf.From, line.WhatIf.To
		}
		shown = append(shown, fmt.Sprintf("%s %s %s → %s", line.Kind, line.Endpoint, line.From, line.To))
	}
	return shown, nc.Stats().InMsgs
}

// windowShows is what windowAfterTransitions' replay shows: w1's down in the window, which the
// what-if would not make, and w2 back up under rise=1 from the down STATE recorded before it.
var windowShows = []string{"transition w1 up → down", "what_if w1  → down", "what_if w2 down → up"}

// TestAShortWindowReadsLittleOfTheHistoryBeforeIt: a long-lived installation's STATE holds a
// year of transitions (here 20,000 of an endpoint that flapped); a replay of a short window
// after them reads the status each endpoint had when the window opened, not the whole history,
// and still shows the window's transitions and re-decides from that status.
func TestAShortWindowReadsLittleOfTheHistoryBeforeIt(t *testing.T) {
	shown, received := windowAfterTransitions(t, eventstest.Start(t))
	if !slices.Equal(shown, windowShows) {
		t.Errorf("the replay of the window shows\n%s\nwant\n%s", strings.Join(shown, "\n"), strings.Join(windowShows, "\n"))
	}
	if received > oldTransitions/20 {
		t.Errorf("the replay of a window after %d transitions received %d messages, want at most %d", oldTransitions, received, oldTransitions/20)
	}
}

// TestAShortWindowOfAStreamWithoutDirectGetsReadsTheHistoryBeforeIt: where STATE answers no
// multi_last direct get (a server older than 2.11, or a stream allowing none), the replay reads
// what STATE stored before the window, as it did before it read the last message of each
// subject, and shows the same.
func TestAShortWindowOfAStreamWithoutDirectGetsReadsTheHistoryBeforeIt(t *testing.T) {
	srv := eventstest.Start(t)
	st := srv.Stream(t, events.StreamState).CachedInfo().Config
	st.AllowDirect = false
	if _, err := srv.JS.UpdateStream(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	shown, received := windowAfterTransitions(t, srv)
	if !slices.Equal(shown, windowShows) {
		t.Errorf("the replay of the window shows\n%s\nwant\n%s", strings.Join(shown, "\n"), strings.Join(windowShows, "\n"))
	}
	if received < oldTransitions {
		t.Errorf("the replay received %d messages, fewer than the %d transitions before the window", received, oldTransitions)
	}
}

// TestAWindowShowsTheRollbackOfADrillStartedBeforeIt: --app keeps the steps of the drills that
// touch the app, which their start names; a drill started before the window (and its warm-up)
// and rolled back in it still shows its rollback, as its start is read with it.
func TestAWindowShowsTheRollbackOfADrillStartedBeforeIt(t *testing.T) {
	ctx := context.Background()
	srv := eventstest.Start(t)
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(flapYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(typ string, data any) {
		t.Helper()
		e, err := events.New(typ, "drill/alice", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, srv.JS, events.DrillSubject("d1"), e); err != nil {
			t.Fatal(err)
		}
	}
	publish(events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "west-out", By: "alice", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: time.Hour.Milliseconds()})
	from := time.Now().Add(replay.Warmup(cfg, nil) + 10*time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(from) }, "the window to open")
	publish(events.TypeDrillRolledBack, events.DrillRolledBack{By: "alice", Reason: "done"})

	var out bytes.Buffer
	if err := replay.Run(ctx, srv.JS, replay.Options{Filter: replay.Filter{From: from, App: "shop"}, Config: cfg, Format: "text"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "drill  d1  rolled_back done") {
		t.Errorf("replay --app shop of a window holding drill d1's rollback does not show it:\n%s", out.String())
	}
}

// TestAReplayAsksEachStreamOnceAndReadsCONFIGOnce: a what-if following the configuration
// versions asks the servers about each stream it reads once, and reads CONFIG once, for the
// warm-up and the versions alike, though CONFIG holds no version up to --to.
func TestAReplayAsksEachStreamOnceAndReadsCONFIGOnce(t *testing.T) {
	ctx := context.Background()
	srv := eventstest.Start(t)
	before := time.Now()
	var cfg *config.Config
	for i := range 3 {
		var err error
		doc := strings.Replace(flapYAML, "hold_down: 90ms", fmt.Sprintf("hold_down: %dms", 90+i), 1)
		if cfg, err = config.Publish(ctx, srv.JS, "shop.yaml", []byte(doc), "alice@box"); err != nil {
			t.Fatal(err)
		}
	}
	publishTransitions(t, srv.JS, "w1", 1)
	s, err := replay.ParseSettings("fall=1")
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name string
		f    replay.Filter
	}{
		{"the last minute", replay.Filter{From: time.Now().Add(-time.Minute)}},
		{"a window before every version", replay.Filter{From: before.Add(-time.Minute), To: before}},
	} {
		doneSubject := fmt.Sprintf("test.replay.done.%d", i)
		// Another connection counts the requests of the replay's, which ends them with "done": in
		// the order it sent them, every one came before.
		watch := eventstest.Connect(t, srv.URL)
		asked := map[string]int{}
		done := make(chan struct{})
		// One subscription, whose callbacks come one after another in the order it received them.
		if _, err := watch.Subscribe(">", func(m *nats.Msg) {
			switch {
			case m.Subject == doneSubject:
				close(done)
			case strings.HasPrefix(m.Subject, "$JS.API.STREAM.INFO."), strings.HasPrefix(m.Subject, "$JS.API.CONSUMER.CREATE."):
				// STREAM.INFO.<stream> and CONSUMER.CREATE.<stream>.<consumer>…
				asked[strings.Join(strings.SplitN(strings.TrimPrefix(m.Subject, "$JS.API."), ".", 4)[:3], ".")]++
			}
		}); err != nil {
			t.Fatal(err)
		}
		if err := watch.Flush(); err != nil {
			t.Fatal(err)
		}
		nc, js := eventstest.ConnectJS(t, srv.URL)
		o := replay.Options{Filter: tc.f, Config: cfg, WhatIf: &s, Versions: true}
		if err := replay.Run(ctx, js, o, io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(doneSubject, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the replay's last message did not come")
		}
		for _, name := range []string{events.StreamProbes, events.StreamState, events.StreamDNS, events.StreamRoutes, events.StreamDrills, events.StreamConfig} {
			if n := asked["STREAM.INFO."+name]; n != 1 {
				t.Errorf("the replay of %s asked for %s's information %d times, want once", tc.name, name, n)
			}
		}
		if n := asked["CONSUMER.CREATE."+events.StreamConfig]; n != 1 {
			t.Errorf("the replay of %s read CONFIG %d times, want once", tc.name, n)
		}
	}
}

// TestAWindowThatEndedReadsLittleOfTheHistoryAfterIt: a replay of an incident a year ago reads
// what the window holds and the phases that followed it, not every transition, answer and route
// table stored since (here 20,000 transitions after the window and its phases).
func TestAWindowThatEndedReadsLittleOfTheHistoryAfterIt(t *testing.T) {
	const grace = 100 * time.Millisecond
	replay.SetPhaseGrace(t, grace)
	ctx := context.Background()
	srv := eventstest.Start(t)
	cfg, err := config.Publish(ctx, srv.JS, "shop.yaml", []byte(flapYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	publishTransitions(t, srv.JS, "w1", 1)
	to := time.Now()
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(to.Add(grace)) }, "the window's phases to pass")
	publishTransitions(t, srv.JS, "w2", oldTransitions)

	nc, js := eventstest.ConnectJS(t, srv.URL)
	var out bytes.Buffer
	if err := replay.Run(ctx, js, replay.Options{Filter: replay.Filter{From: from, To: to}, Config: cfg, Format: "text"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "shop/west/w1  up → down: flapped") || strings.Contains(out.String(), "shop/west/w2") {
		t.Errorf("the replay of the window does not show w1's down alone:\n%s", out.String())
	}
	// Past the end, at most what one pull asked for ahead (4,096 messages) is read for nothing.
	if received := nc.Stats().InMsgs; received > oldTransitions/4 {
		t.Errorf("the replay of a window before %d transitions received %d messages, want at most %d", oldTransitions, received, oldTransitions/4)
	}
}

// TestATransitionWhoseAnswerCameAfterTheReadSaysSo: replay --to reads 10 minutes past the
// window for the answers its transitions caused. A DNS server cut from NATS for longer stored
// w1's answer after that: the phases say up to when they were read, where they said "answer
// unchanged", which the DNS server's later answer belies.
func TestATransitionWhoseAnswerCameAfterTheReadSaysSo(t *testing.T) {
	const grace = 100 * time.Millisecond
	replay.SetPhaseGrace(t, grace)
	ctx := context.Background()
	srv := eventstest.Start(t)
	at := time.Now()
	down := storeW1Down(t, srv.JS, at)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(at.Add(2 * grace)) }, "the DNS server's outage to outlast the read past the window")
	answerW1(t, srv.JS, down, time.Now())
	var out bytes.Buffer
	if err := replay.Run(ctx, srv.JS, replay.Options{Filter: replay.Filter{To: at}, Format: "text"}, &out); err != nil {
		t.Fatal(err)
	}
	want := "no answer read up to " + at.Add(grace).UTC().Format("15:04:05.000")
	if strings.Contains(out.String(), "answer unchanged") || !strings.Contains(out.String(), want) {
		t.Errorf("replay --to %s (w1's down, whose answer came later than the read past it) does not say %q:\n%s", at.Format(time.RFC3339Nano), want, out.String())
	}
}

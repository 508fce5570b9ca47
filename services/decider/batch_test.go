package decider_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
)

// fleetYAML is n apps of one pool of one endpoint each.
func fleetYAML(n int) string {
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: app%d\n    fqdn: app%d.demo.test\n    check: {type: tcp, interval: 1s, timeout: 500ms, fall: 3, rise: 2, stale_after: 1h}\n"+
			"    pools: [{name: main, endpoints: [{name: e, address: \"127.0.%d.%d:8081\"}]}]\n", i, i, i/200, 1+i%200)
	}
	return b.String()
}

// sendRound publishes one prober tick: a result of every app's endpoint, ok or not.
func sendRound(t *testing.T, srv *eventstest.Server, n int, ok bool, round int) {
	t.Helper()
	b := events.ProbeBatch{Region: "eu", Prober: "p1"}
	for i := range n {
		b.Results = append(b.Results, events.ProbeResult{ID: fmt.Sprintf("r%d-%d", round, i), At: time.Now(), App: fmt.Sprintf("app%d", i),
			Pool: "main", Endpoint: "e", Region: "eu", Prober: "p1", Check: "tcp", OK: ok})
	}
	e, err := events.New(events.TypeProbeBatchCompleted, "prober/eu/p1", time.Now(), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), srv.JS, events.ProbeBatchSubject("eu", "p1"), e); err != nil {
		t.Fatal(err)
	}
}

func stateMessages(t *testing.T, srv *eventstest.Server) uint64 {
	t.Helper()
	info, err := srv.Stream(t, events.StreamState).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestARegionFailingAtOnceIsRecordedInAFewBatchesAndAReaderStartingFromTheLastMessagesSeesEveryTransition(t *testing.T) {
	const n = 300
	srv := eventstest.Start(t)
	cfg := eventstest.Config(t, fleetYAML(n))
	r := start(t, srv.JS, cfg, "decider/a")
	round := 0
	for _, ok := range []bool{true, true, false, false, false} {
		round++
		sendRound(t, srv, n, ok, round)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(eventstest.StateFacts(t, srv.JS)) == 4*n },
		"STATE to hold %d transitions (every endpoint and pool up, then down)", 4*n)
	// Two rounds decided something (rise, then fall): each is one batch of endpoints and one of
	// pools, 2 × 300 transitions of about 500 bytes in a batch of at most 256 KiB.
	if got := stateMessages(t, srv); got > 8 {
		t.Errorf("STATE holds %d messages for %d transitions, want at most 8 batches", got, 4*n)
	}

	// One endpoint flaps until the batches have gone round their slots more than once.
	p := &prober{t: t, js: srv.JS, region: "eu"}
	for r.stats.Batches.Load() < 2*events.BatchSlots+10 {
		for _, ok := range []bool{true, true, false, false, false} {
			p.send("app0", "main", "e", ok)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.Messages.Load() == uint64(5+p.n) }, "the decider to fold every result")
	if r.stats.Checkpoints.Load() == 0 {
		t.Fatal("no checkpoint was written over more than 128 batches")
	}

	// A reader starting from the last message of each subject knows what the whole history says.
	history := state.NewView()
	facts := eventstest.StateFacts(t, srv.JS)
	for _, f := range facts {
		if _, err := history.Apply(f.Subject, f.Seq, f.Env); err != nil {
			t.Fatal(err)
		}
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return r.stats.StateSeq.Load() >= history.LastSeq() }, "the decider to read STATE")
	last, err := state.Load(context.Background(), srv.JS)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for _, subject := range []string{events.EndpointStateSubject(fmt.Sprintf("app%d", i), "main", "e"), events.PoolStateSubject(fmt.Sprintf("app%d", i), "main")} {
			want, _ := history.Subject(subject)
			if got, _ := last.Subject(subject); got != want {
				t.Fatalf("%s read from the last messages: %+v, from the whole history: %+v", subject, got, want)
			}
		}
	}

	// A second replica starting now decides nothing STATE does not already hold.
	msgs := stateMessages(t, srv)
	b := start(t, srv.JS, cfg, "decider/b")
	if b.stats.Batches.Load() != 0 || len(eventstest.StateFacts(t, srv.JS)) != len(facts) {
		t.Errorf("a replica started from the checkpoint appended %d batches (STATE %d → %d messages)", b.stats.Batches.Load(), msgs, stateMessages(t, srv))
	}
}

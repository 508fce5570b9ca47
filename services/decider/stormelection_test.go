package decider_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// regionYAML is apps × 10 pools × 100 endpoints, each deciding on one result (fall 1, rise 1).
func regionYAML(apps int) string {
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n")
	for a := range apps {
		fmt.Fprintf(&b, "  - name: app%d\n    fqdn: app%d.demo.test\n", a, a)
		b.WriteString("    check: {type: tcp, interval: 1s, timeout: 500ms, fall: 1, rise: 1, stale_after: 1h}\n    pools:\n")
		for p := range 10 {
			fmt.Fprintf(&b, "      - name: pool%d\n        endpoints:\n", p)
			for e := range 100 {
				fmt.Fprintf(&b, "          - {name: e%d, address: \"10.%d.%d.%d:80\"}\n", e, a, p, e+1)
			}
		}
	}
	return b.String()
}

// publishRegion publishes one result for every endpoint of regionYAML(apps), 500 to a message as
// the probers batch them.
func publishRegion(t testing.TB, js jetstream.JetStream, apps int, ok bool) {
	t.Helper()
	var rs []events.ProbeResult
	at := time.Now()
	for a := range apps {
		for p := range 10 {
			for e := range 100 {
				rs = append(rs, events.ProbeResult{ID: fmt.Sprintf("%v-%d-%d-%d", ok, a, p, e), At: at, App: fmt.Sprintf("app%d", a),
					Pool: fmt.Sprintf("pool%d", p), Endpoint: fmt.Sprintf("e%d", e), Region: "eu", Prober: "p1", Check: "tcp", OK: ok})
			}
		}
	}
	for i := 0; i < len(rs); i += 500 {
		env, err := events.New(events.TypeProbeBatchCompleted, "prober/eu", at, events.ProbeBatch{Region: "eu", Prober: "p1", Results: rs[i:min(i+500, len(rs))]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), events.ProbeBatchSubject("eu", "p1"), env.Encode()); err != nil {
			t.Fatal(err)
		}
	}
}

// unheard is leaderless whose unanswered appends do reach NATS (a subscriber takes them and
// never answers), so that the client's acknowledgements pending pile up and time out as they do
// while STATE has no leader; eventstest.Electing's own never reach the client.
type unheard struct{ *leaderless }

func (u unheard) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if !u.On.Load() || !strings.HasPrefix(m.Subject, u.Prefix) {
		return u.leaderless.PublishMsgAsync(m, opts...)
	}
	u.Refused.Add(1)
	lost := nats.NewMsg("unheard." + m.Subject)
	lost.Data, lost.Header = m.Data, m.Header
	return u.Electing.JetStream.PublishMsgAsync(lost, opts...)
}

// A region of 5,000 endpoints fails while STATE elects a leader (the node leading it was in that
// region): the decider's appends go unanswered for the whole election, more than the NATS client
// keeps pending (4,000), and every transition is stored within seconds of the election, once.
func TestARegionFailingWhileSTATEElectsIsStoredSoonAfterTheElection(t *testing.T) {
	const apps = 5
	n := uint64(apps*1000 + apps*10) // the endpoints' and the pools' transitions
	srv := eventstest.Start(t)
	if _, err := srv.Conn.Subscribe("unheard.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	js, err := events.NewJetStream(eventstest.Connect(t, srv.URL)) // as a role connects
	if err != nil {
		t.Fatal(err)
	}
	w := newLeaderless(js, "none")
	start(t, unheard{w}, eventstest.Config(t, regionYAML(apps)), "decider/a")
	stored := func() uint64 {
		info, err := srv.Stream(t, events.StreamState).Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	publishRegion(t, srv.JS, apps, true)
	eventstest.Eventually(t, 30*time.Second, func() bool { return stored() == n }, "every endpoint and pool recorded up")

	w.lose(1 << 30)
	publishRegion(t, srv.JS, apps, false)
	// Every transition tried once, more than the client keeps pending.
	eventstest.Eventually(t, 30*time.Second, func() bool { return w.attempts() >= int(n) }, "the decider tried every transition")
	w.elect()
	const within = 3 * time.Second
	var got uint64
	eventstest.Eventually(t, within, func() bool { got = stored(); return got >= 2*n }, "%d transitions stored %s after the election, want %d", &got, within, 2*n)
	t.Logf("%d transitions stored %s after the election", n, time.Since(w.electedAt()).Round(time.Millisecond))
	if got = stored(); got != 2*n {
		t.Errorf("STATE holds %d events, want %d: a transition was stored twice", got, 2*n)
	}
}

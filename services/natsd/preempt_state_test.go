package natsd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/rs/zerolog"
)

// The controller, which writes STATE too (edge transitions, overrides), must not be able to
// store a decider's next transition's id first and have JetStream drop the transition.
func TestDeploymentIdentitiesTheControllerCannotDropADecidersPoolTransitionByPublishingItsIDFirst(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	// A deadline of the test's own for its setup calls, rather than the client's default of 5 s:
	// CI once saw one STREAM.INFO go unanswered for those 5 s on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, _, err := config.Apply(ctx, d.as("operator").js, "test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "decider-1", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: d.as("decider-1").js, Config: cfg, Name: "decider-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	down, err := events.New(events.TypeEndpointDown, "decider-2", time.Now(),
		events.Transition{App: "shop", Pool: "us-west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	controller := d.as("controller-1")
	st, err := controller.js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	pool := events.PoolStateSubject("shop", "us-west")
	_, seq, _, err := events.Last(ctx, st, pool)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := events.New(events.TypeEdgeDown, "controller-1", time.Now(), events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	forged.ID = events.DerivedID(down.ID, events.TypePoolDown+"|"+pool+"|"+string(events.StatusDown)+"|"+fmt.Sprint(seq))
	if _, err := events.Publish(ctx, controller.js, events.EdgeStateSubject("edge-west"), forged); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, d.as("decider-2").js, events.EndpointStateSubject("shop", "us-west", "w1"), down); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, pool)
		return err == nil && ok && e.Type == events.TypePoolDown
	}, "us-west's pool down is not on %s: dropped as a duplicate of the controller's event", pool)
}

// A decider, which writes STATE too, reads in STATE the heartbeat an edge's down rested on and
// the sequence of the edge's next transition: it must not be able to store, under the id of the
// edge's next down derived from those, a message of its own first and have JetStream drop the
// down. Here edge-west falls silent (down, resting on its last heartbeat), a prober finds its
// listener answering (up), and the decider stores the id of the down that the listener's checks
// going stale bring, resting on the same heartbeat.
func TestDeploymentIdentitiesADeciderCannotDropTheControllersEdgeTransitionByPublishingItsIDFirst(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, _, err := config.Apply(ctx, d.as("operator").js, "test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {interval: 100ms, fall: 3, rise: 2, stale_after: 500ms}
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "controller-1", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: d.as("controller-1").js, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	edge, prober, dec := d.as("edge-west"), d.as("prober-us-west-1"), d.as("decider-1")
	st, err := dec.js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	subject := events.EdgeStateSubject("edge-west")
	history := func() (string, []events.Envelope, []uint64) {
		var s string
		var es []events.Envelope
		var seqs []uint64
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil || m.Subject != subject {
				continue
			}
			e, err := events.Decode(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			s += map[string]string{events.TypeEdgeUp: "U", events.TypeEdgeDown: "D"}[e.Type]
			es, seqs = append(es, e), append(seqs, seq)
		}
		return s, es, seqs
	}
	got := func() string { s, _, _ := history(); return s }
	// The edge heartbeats, then falls silent: up, then down for its silence.
	beats := time.NewTicker(100 * time.Millisecond) // the edge's heartbeat interval
	for seq := uint64(1); got() != "U"; seq++ {
		if seq > 100 {
			t.Fatalf("edge-west not recorded up, history %q", got())
		}
		hb, err := events.New(events.TypeEdgeHeartbeat, "edge-west", time.Now(), events.Heartbeat{Edge: "edge-west", Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		if err := edge.nc.Publish(events.HeartbeatSubject("edge-west"), hb.Encode()); err != nil {
			t.Fatal(err)
		}
		<-beats.C
	}
	beats.Stop()
	eventstest.Eventually(t, 5*time.Second, func() bool { return got() == "UD" }, "edge-west not recorded down for its silence")
	// A prober finds its listener answering, until the forgery is stored: up.
	forged := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		tick := time.NewTicker(100 * time.Millisecond) // the check's interval
		defer tick.Stop()
		for {
			r := events.ProbeResult{At: time.Now().UTC(), App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-west", Region: "us-west", OK: true}
			e, err := events.New(events.TypeProbeCompleted, "prober-us-west-1", time.Now(), r)
			if err != nil {
				t.Error(err)
				return
			}
			_ = prober.nc.Publish(events.ProbeSubject("us-west", "shop", events.EdgeProbePool, "edge-west"), e.Encode())
			select {
			case <-forged:
				return
			case <-tick.C:
			}
		}
	}()
	eventstest.Eventually(t, 5*time.Second, func() bool { return got() == "UDU" }, "edge-west not recorded up for its listener's checks")
	// The decider computes the id of the next down, resting on the heartbeat the last one did
	// and following the up, and stores a transition of its own under it.
	_, es, seqs := history()
	next := events.DerivedID(es[1].Cause, events.TypeEdgeDown+"|edge-west|"+fmt.Sprint(seqs[2]))
	forgery, err := events.New(events.TypeEndpointDown, "decider-1", time.Now(),
		events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUnknown, To: events.StatusDown, Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	forgery.ID = next
	if _, err := events.Publish(ctx, dec.js, events.EndpointStateSubject("shop", "west", "w1"), forgery); err != nil {
		t.Fatal(err)
	}
	close(forged)
	<-checked
	// The checks go stale and the silence decides again: down, stored.
	var h string
	eventstest.Eventually(t, 5*time.Second, func() bool { h = got(); return h == "UDUD" },
		"edge-west's second down is not in STATE (history %q): dropped as a duplicate of the decider's message", &h)
}

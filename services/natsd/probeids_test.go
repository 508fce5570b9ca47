package natsd_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/services/decider"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// predictableID is the id probers gave a result published alone until each drew its own: a
// name-based UUID of the region, the check's key, its interval and its window, under a
// namespace anyone can read in the source, so that any prober could compute another region's
// ids for the windows to come.
func predictableID(region, key string, interval time.Duration, n int64) string {
	ns := uuid.MustParse("4f8e3f0e-5b7a-4c55-9a4e-6d2f0b1c9e11")
	name := region + "|" + key + "|" + strconv.FormatInt(int64(interval), 10) + "|" + strconv.FormatInt(n, 10)
	return uuid.NewSHA1(ns, []byte(name)).String()
}

// JetStream drops a message whose Nats-Msg-Id it stored within PROBES' duplicate window,
// whatever its subject, and a decider matched what it heard on the wire to what PROBES delivered
// by that id alone. A us-west prober, which may publish only on us-west's subjects, publishes
// there, under each id it can work out for us-east's coming results, a result that claims to be
// us-east's: us-east's endpoint then fails, and us-east's results must still be stored and take
// it down.
func TestDeploymentIdentitiesAProberOfOneRegionCannotSilenceAnothersResultsByPublishingUnderTheirIDsFirst(t *testing.T) {
	const interval = 200 * time.Millisecond
	d := startDeployment(t)
	d.ensureStreams()
	target := listen(t, "127.0.0.1")
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
regions: [us-west, us-east]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: %s, timeout: 150ms, fall: 3, rise: 2}
    pools:
      - {name: main, endpoints: [{name: e1, address: %q}]}
`, interval, target.Addr())
	op := d.as("operator")
	ctx := context.Background()
	cfg, _, err := config.Apply(ctx, op.js, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	east, west, dec := d.as("prober-us-east-1"), d.as("prober-us-west-1"), d.as("decider-1")
	eventstest.Run(t, "decider-1", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: dec.js, Config: cfg, Name: "decider-1", Log: log})
	})
	eventstest.Run(t, "prober-us-east-1", func(ctx context.Context) error {
		return prober.Run(ctx, prober.Options{JS: east.js, Config: cfg, Region: "us-east", Name: "p1", Log: log})
	})
	stateSubject := events.EndpointStateSubject("shop", "main", "e1")
	state, err := op.js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, state, stateSubject)
		return err == nil && ok && e.Type == events.TypeEndpointUp
	}, "us-east's results never took e1 up")

	// The attack, on us-west's own subject under us-east's ids: each window's from three windows
	// ahead, again every 20 ms. PROBES stored the first and dropped us-east's result that came
	// under the same id; the decider heard the later copies on the wire, each waiting there for
	// PROBES to deliver it, and took us-east's copy heard under the same id for one of them.
	decoy := func(n int64) *nats.Msg {
		id := predictableID("us-east", "shop/main/e1", interval, n)
		at := time.Unix(0, n*int64(interval)).UTC().Format(time.RFC3339Nano)
		m := nats.NewMsg(events.ProbeSubject("us-west", "shop", "main", "e1"))
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Data = fmt.Appendf(nil, `{"type":%q,"id":%q,"time":%q,"source":"prober/us-east/p1","data":{"id":%q,"at":%q,`+
			`"app":"shop","pool":"main","endpoint":"e1","address":%q,"region":"us-east","prober":"p1","check":"tcp","ok":true,"latency_us":80,"window":%d}}`,
			events.TypeProbeCompleted, id, at, id, at, target.Addr(), n)
		return m
	}
	attack := func() {
		for n := prober.Window(time.Now(), interval); n < prober.Window(time.Now(), interval)+3; n++ {
			if err := west.nc.PublishMsg(decoy(n)); err != nil {
				t.Errorf("prober-us-west-1 publishes on its own subject: %v", err)
			}
		}
	}
	attack()
	if err := west.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	attacking, stop := time.NewTicker(20*time.Millisecond), make(chan struct{}) // the attacker's pace
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-attacking.C:
				attack()
			case <-stop:
				return
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		attacking.Stop()
	}()
	_ = target.Close()
	closed := time.Now()
	// Down by us-east's failures, not by its silence (a region without results goes stale).
	var last events.Transition
	eventstest.Eventually(t, 10*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, state, stateSubject)
		if err != nil || !ok || e.Payload(&last) != nil {
			return false
		}
		return e.Type == events.TypeEndpointDown && len(last.Results) == 3 &&
			slices.Contains(last.Votes, events.Vote{Region: "us-east", Status: events.StatusDown})
	}, "e1 failed for us-east, whose results did not take it down: last transition %+v", &last)
	probes, err := op.js.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	m, err := probes.GetLastMsgForSubject(ctx, events.ProbeSubject("us-east", "shop", "main", "e1"))
	if err != nil || m.Time.Before(closed) {
		t.Errorf("PROBES holds no us-east result of e1 since it failed (err %v)", err)
	}
	if v := west.errors(); len(v) > 0 {
		t.Errorf("prober-us-west-1 ran into the server's permissions: %q", v)
	}
}

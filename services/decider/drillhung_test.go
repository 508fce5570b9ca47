package decider_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestADeciderRestartedWhileAReplicaHangsAppliesADrillSoon: deciders are restarted (a rolling
// restart) while one of three JetStream nodes hangs, the node that holds the DRILLS consumer
// each one's last run left, and a drill of one of shop's pools starts as each starts.
// Its DRILLS reader, with nothing to read by while it had no consumer, first waited for the hung
// node to say whether that consumer was in use and to delete it (0.25 s and 1 s), then for a
// creation JetStream may place on that node again (2 s): the drill's simulated failure was
// recorded 1.3 s or more after the drill started. It reads DRILLS by direct gets once it has gone
// 250 ms without a consumer, as its STATE and PROBES readers do: each failure is recorded within
// 0.8 s.
func TestADeciderRestartedWhileAReplicaHangsAppliesADrillSoon(t *testing.T) {
	const restarted = 3
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamState, events.StreamProbes, events.StreamDrills)
	url := c.URLs[(hung+1)%len(c.Servers)]
	_, js := eventstest.ConnectJS(t, url)
	pools := []string{"west", "east", "south"}
	cfg := eventstest.Config(t, strings.Replace(shopYAML, "      - name: east",
		"      - name: south\n        endpoints: [{name: s1, address: \"127.0.0.13:8081\"}]\n      - name: east", 1))
	drills, err := js.Stream(context.Background(), events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	// endpoint is the one endpoint of each pool.
	endpoint := func(pool string) string { return pool[:1] + "1" }
	// last reads STATE's leader, which is not the hung node: a direct get (events.Last) that
	// drew the hung replica waited up to 200 ms to be sent again, counted as the decider's.
	last := func(pool string) (events.Status, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		e, _, ok, err := events.LeaderLast(ctx, js, events.StreamState, events.EndpointStateSubject("shop", pool, endpoint(pool)))
		var tr events.Transition
		if err != nil || !ok || e.Payload(&tr) != nil {
			return "", ""
		}
		return tr.To, tr.Reason
	}
	drill := func(id, typ string, data any) {
		t.Helper()
		e, err := events.New(typ, "drill/test", time.Now(), data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), js, events.DrillSubject(id), e); err != nil {
			t.Fatal(err)
		}
	}
	// run starts a decider connected as user, as the role connects (its replies under its own
	// inbox, its consumers named for it).
	run := func(user string) (*decider.Stats, func()) {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		o := decider.Options{JS: js, Config: cfg, Name: user, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
		return o.Stats, eventstest.Run(t, "decider "+user, func(ctx context.Context) error { return decider.Run(ctx, o) })
	}
	eu := &prober{t: t, js: js, region: "eu"}
	for range 2 {
		for _, pool := range pools {
			eu.send("shop", pool, endpoint(pool), true)
		}
	}
	// Deciders whose DRILLS consumers JetStream placed on the node about to hang run until live
	// and stop, leaving their consumers there.
	users := c.LeftOn(t, hung, restarted, drills, "decider", "", func(user string) func() {
		stats, stop := run(user)
		eventstest.Eventually(t, 10*time.Second, stats.Live.Load, "decider %s live with every node awake", user)
		return stop
	})
	for _, pool := range pools {
		eventstest.Eventually(t, 10*time.Second, func() bool { to, _ := last(pool); return to == events.StatusUp },
			"%s recorded up with every node awake", endpoint(pool))
	}
	c.DirectGets(t, events.StreamProbes)
	c.DirectGets(t, events.StreamState)
	c.DirectGets(t, events.StreamDrills)
	c.Silence(hung)

	var slowest time.Duration
	for i, user := range users {
		id, pool := fmt.Sprintf("d%d", i), pools[i]
		_, stop := run(user)
		sent := time.Now()
		drill(id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: id, By: "test", RollbackAt: time.Now().Add(time.Hour)})
		drill(id, events.TypeDrillStepStarted, events.DrillStep{Step: "fail pool shop/" + pool,
			Failures: []events.Failure{{Kind: events.FailPool, App: "shop", Pool: pool}}})
		eu.send("shop", pool, endpoint(pool), true) // the probes pass throughout: the failure is simulated
		eventstest.Eventually(t, 15*time.Second, func() bool {
			to, reason := last(pool)
			return to == events.StatusDown && strings.HasPrefix(reason, "drill "+id)
		}, "%s recorded down by decider %s for drill %s with n%d hung", endpoint(pool), user, id, hung)
		took := time.Since(sent)
		stop()
		t.Logf("%s: %s down recorded %s after drill %s started", user, endpoint(pool), took.Round(time.Millisecond), id)
		slowest = max(slowest, took)
	}
	if limit := 800 * time.Millisecond; slowest > limit {
		t.Errorf("the slowest of %d deciders restarted with n%d hung recorded a drill's failure %s after it started, want within %s",
			len(users), hung, slowest.Round(time.Millisecond), limit)
	}
}

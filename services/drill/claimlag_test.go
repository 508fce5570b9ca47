package drill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
)

// TestADrillStartedWhileADRILLSReplicaLagsHoldsItsAppPastItsClaimsUntil: drill d1 claimed shop
// and started, its start stored while one of DRILLS's three replicas was cut from the leader;
// its claim's until has passed, which frees an app only of a drill that never started. Another
// drill claiming shop read whether d1 started from whichever replica NATS drew, and where it drew
// the lagging one (no start stored there) took shop for free and claimed it: two drills held one
// app, about one claim in three.
func TestADrillStartedWhileADRILLSReplicaLagsHoldsItsAppPastItsClaimsUntil(t *testing.T) {
	const attempts = 30 // a claim drawing the lagging replica each time with p ≈ 1/3: missed by all ≈ 5e-6
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, admin := eventstest.ConnectJS(t, c.URLs[0])
	var err error
	eventstest.Eventually(t, 10*time.Second, func() bool {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err = events.EnsureStreams(sctx, admin, events.StreamOptions{Replicas: 3, Memory: true})
		return err == nil
	}, "the streams created: %v", &err)
	drills, err := admin.Stream(ctx, events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	info, err := drills.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader, lagging, reader := -1, -1, -1
	for i, ns := range c.Servers {
		switch {
		case ns.Name() == info.Cluster.Leader:
			leader = i
		case lagging < 0 && !ns.JetStreamIsLeader():
			lagging = i
		default:
			reader = i
		}
	}
	if leader < 0 || lagging < 0 || reader < 0 {
		t.Fatalf("DRILLS leader %q: no node to cut from it", info.Cluster.Leader)
	}
	for i := range c.Servers {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return c.Knows(i, "$JS.API.DIRECT.GET.DRILLS") == 3 && c.Knows(i, "$JS.API.DIRECT.GET.DRILLS.>") == 3
		}, "node %d knowing the direct gets of all three replicas of DRILLS", i)
	}
	// From here on the drills reach DRILLS's leader through the third node.
	_, js := eventstest.ConnectJS(t, c.URLs[reader])

	d1 := events.DrillClaim{ID: "d1", Name: "west", By: "alice@a", Until: time.Now().Add(time.Second)}
	if _, err := claimApps(ctx, js, d1, []string{"shop"}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return drillsHeld(c.Servers[lagging]) == 1 }, "n%d holding d1's claim", lagging)
	c.Cut(leader, lagging)
	start, err := events.New(events.TypeDrillStarted, "drill/alice@a", time.Now(), events.DrillStarted{ID: d1.ID, Name: d1.Name,
		By: d1.By, Apps: []string{"shop"}, Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, js, events.DrillSubject(d1.ID), start); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return drillsHeld(c.Servers[reader]) == 2 }, "n%d holding d1's start", reader)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(d1.Until) }, "d1's claim's until passed")

	want := "app shop is held by drill d1 (west, by alice@a) until it rolls back"
	for i := range attempts {
		d2 := events.DrillClaim{ID: fmt.Sprintf("d2-%d", i), Name: "east", By: "bob@b", Until: time.Now().Add(time.Minute)}
		_, err := claimApps(ctx, js, d2, []string{"shop"})
		if err == nil {
			t.Fatalf("attempt %d: drill %s claimed shop, which started drill d1 holds (n%d behind n%d holds %d of DRILLS's 2 messages)",
				i, d2.ID, lagging, leader, drillsHeld(c.Servers[lagging]))
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Fatalf("attempt %d: %v, want refused with %q", i, err, want)
		}
	}
	if n := drillsHeld(c.Servers[lagging]); n != 1 {
		t.Fatalf("n%d holds %d of DRILLS's messages: it did not lag behind the leader throughout", lagging, n)
	}
}

// drillsHeld returns how many messages ns's replica of DRILLS holds.
func drillsHeld(ns *server.Server) uint64 {
	jsz, err := ns.Jsz(&server.JSzOptions{Streams: true})
	if err != nil {
		return 0
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == events.StreamDrills {
				return s.State.Msgs
			}
		}
	}
	return 0
}

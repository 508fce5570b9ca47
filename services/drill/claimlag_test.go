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
	drills, err := c.Streams(t).Stream(ctx, events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	leader, lagging, reader := c.Replicas(t, drills)
	c.DirectGets(t, events.StreamDrills)
	// From here on the drills reach DRILLS's leader through the third node.
	_, js := eventstest.ConnectJS(t, c.URLs[reader])

	d1 := events.DrillClaim{ID: "d1", Name: "west", By: "alice@a", Until: time.Now().Add(time.Second)}
	if _, err := claimApps(ctx, js, d1, []string{"shop"}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(lagging, events.StreamDrills) == 1 }, "n%d holding d1's claim", lagging)
	c.Cut(leader, lagging)
	start, err := events.New(events.TypeDrillStarted, "drill/alice@a", time.Now(), events.DrillStarted{ID: d1.ID, Name: d1.Name,
		By: d1.By, Apps: []string{"shop"}, Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, js, events.DrillSubject(d1.ID), start); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(reader, events.StreamDrills) == 2 }, "n%d holding d1's start", reader)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(d1.Until) }, "d1's claim's until passed")

	want := "app shop is held by drill d1 (west, by alice@a) until it rolls back"
	for i := range attempts {
		d2 := events.DrillClaim{ID: fmt.Sprintf("d2-%d", i), Name: "east", By: "bob@b", Until: time.Now().Add(time.Minute)}
		_, err := claimApps(ctx, js, d2, []string{"shop"})
		if err == nil {
			t.Fatalf("attempt %d: drill %s claimed shop, which started drill d1 holds (n%d behind n%d holds %d of DRILLS's 2 messages)",
				i, d2.ID, lagging, leader, c.Held(lagging, events.StreamDrills))
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Fatalf("attempt %d: %v, want refused with %q", i, err, want)
		}
	}
	if n := c.Held(lagging, events.StreamDrills); n != 1 {
		t.Fatalf("n%d holds %d of DRILLS's messages: it did not lag behind the leader throughout", lagging, n)
	}
}

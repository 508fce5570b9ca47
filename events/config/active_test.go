package config_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// TestActiveAnswersSoonWhileACONFIGReplicaHangs: every role without --config reads the active
// version (Active) when it starts, with 2 s to answer. NATS hands the read, a direct get, to one
// of CONFIG's three replicas at random, the hung one included: a start that drew it waited the
// 2 s out, then (without a copy on disk) a second more before it asked again, and the status page
// and `detour config get` failed. Twenty starts in a row are each answered within 500 ms.
func TestActiveAnswersSoonWhileACONFIGReplicaHangs(t *testing.T) {
	const starts = 20
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Streams(t).Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	leader, hung, _ := c.Replicas(t, st)
	_, js := eventstest.ConnectJS(t, c.URLs[leader])
	_, applied, err := config.Apply(ctx, js, "detour.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c.DirectGets(t, events.StreamConfig)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return c.Held(0, events.StreamConfig) == 1 && c.Held(1, events.StreamConfig) == 1 && c.Held(2, events.StreamConfig) == 1
	}, "every replica holding the version")
	c.Silence(hung)
	var slowest time.Duration
	for i := range starts {
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, 2*time.Second) // a role's bound (cli's loadConfig)
		v, err := config.Active(actx, js)
		acancel()
		took := time.Since(start)
		slowest = max(slowest, took)
		if err != nil || v.Number != applied.Number {
			t.Fatalf("start %d of %d: Active = version %d, %v after %s; want version %d with the replica on n%d hung",
				i+1, starts, v.Number, err, took.Round(time.Millisecond), applied.Number, hung)
		}
		if limit := 500 * time.Millisecond; took > limit {
			t.Fatalf("start %d of %d: Active answered in %s, want within %s with the replica on n%d hung",
				i+1, starts, took.Round(time.Millisecond), limit, hung)
		}
	}
	t.Logf("%d reads of the active version, the slowest in %s, with the replica on n%d hung", starts, slowest.Round(time.Millisecond), hung)
}

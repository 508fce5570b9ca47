package plan_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/plan"
)

// TestAPlanIsAgainstTheActiveVersionWhileAReplicaLags: one of CONFIG's three replicas is behind
// its leader (cut from it while the operator's node still reaches it) and holds only the
// version before the active one. A plan read the running version as the first replica to answer
// held it: about one plan in three compared the file with the older version, listing as changes
// what the active one had already made, and said to apply it with --expect-version of that
// older version, which the apply then refused. A plan is against the version CONFIG's leader
// holds.
func TestAPlanIsAgainstTheActiveVersionWhileAReplicaLags(t *testing.T) {
	const plans = 20
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := c.Streams(t).Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	leader, lagging, reader := c.Replicas(t, st)
	_, js := eventstest.ConnectJS(t, c.URLs[reader])
	if _, _, err := config.Apply(ctx, js, "detour.yaml", []byte(base), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return c.Held(leader, events.StreamConfig) == 1 && c.Held(lagging, events.StreamConfig) == 1 && c.Held(reader, events.StreamConfig) == 1
	}, "every replica holding the first version")
	c.DirectGets(t, events.StreamConfig)
	c.Cut(leader, lagging)
	doc := []byte(base + "# changed\n")
	_, active, err := config.Apply(ctx, js, "detour.yaml", doc, config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(reader, events.StreamConfig) == 2 },
		"the replica on n%d holding version %d", reader, active.Number)
	for i := range plans {
		p, err := plan.Make(ctx, js, "detour.yaml", doc, true)
		if err != nil {
			t.Fatal(err)
		}
		if p.Against.Number != active.Number {
			t.Fatalf("plan %d of %d: against version %d, want the active version %d with the replica on n%d behind (holding %d of them)",
				i+1, plans, p.Against.Number, active.Number, lagging, c.Held(lagging, events.StreamConfig))
		}
	}
}

package config_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// TestCheckExpectTellsTheActiveVersionWhileAReplicaLags: `detour apply --expect-version N`
// checks that N is the active version (CheckExpect) before it updates the streams' bounds, then
// stores the document after N. One of CONFIG's three replicas is behind its leader (cut from it
// while the operator's node still reaches it) and holds only the version before N: the check
// read the active version as the first replica to answer held it, so that one apply in three
// was refused, saying that the older version was active ("plan again", which read it as
// stale), and one expecting that older version passed the check, had the bounds updated, and
// was then refused by the leader, where an apply refused for --expect-version changes no bound.
// The check reads the version CONFIG's leader holds.
func TestCheckExpectTellsTheActiveVersionWhileAReplicaLags(t *testing.T) {
	const checks = 20
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := c.Streams(t).Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	leader, lagging, reader := c.Replicas(t, st)
	_, js := eventstest.ConnectJS(t, c.URLs[reader])
	_, older, err := config.Apply(ctx, js, "detour.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return c.Held(leader, events.StreamConfig) == 1 && c.Held(lagging, events.StreamConfig) == 1 && c.Held(reader, events.StreamConfig) == 1
	}, "every replica holding version %d", older.Number)
	c.DirectGets(t, events.StreamConfig)
	c.Cut(leader, lagging)
	_, active, err := config.Apply(ctx, js, "detour.yaml", []byte(watchDoc+"# changed\n"), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return c.Held(reader, events.StreamConfig) == 2 },
		"the replica on n%d holding version %d", reader, active.Number)
	for i := range checks {
		if err := config.CheckExpect(ctx, js, "detour.yaml", active.Number); err != nil {
			t.Fatalf("check %d of %d: expecting the active version %d: %v; want none with the replica on n%d behind (holding %d versions)",
				i+1, checks, active.Number, err, lagging, c.Held(lagging, events.StreamConfig))
		}
		err := config.CheckExpect(ctx, js, "detour.yaml", older.Number)
		if !errors.Is(err, config.ErrVersionConflict) || !strings.Contains(err.Error(), fmt.Sprintf("version %d is active", active.Number)) {
			t.Fatalf("check %d of %d: expecting version %d: %v; want a conflict naming version %d active with the replica on n%d behind",
				i+1, checks, older.Number, err, active.Number, lagging)
		}
	}
	if n := c.Held(lagging, events.StreamConfig); n != 1 {
		t.Fatalf("the replica on n%d holds %d versions: it did not lag", lagging, n)
	}
}

// A role that starts on the active version (cli's loadConfig, Active then Config) runs a
// configuration that names the version, as one Watch delivers does: a DNS server's push marker
// names it. Before, it named 0, as a file does, until the next version was applied.
func TestAVersionsConfigurationNamesItsNumber(t *testing.T) {
	applied := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	c, err := config.Version{Number: 7, Time: applied, Document: watchDoc}.Config()
	if err != nil || c.Version != 7 || !c.Applied.Equal(applied) {
		t.Fatalf("version 7's configuration: %v, %v; want one of Version 7, applied at %v", c, err, applied)
	}
}

package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLastOfReadsEverySubjectSoonWhileAReplicaHangs: a controller starting reads the last route
// of each app of each edge (LastOf) while one of ROUTES's three replicas hangs. NATS hands each
// direct get to a replica at random, the hung one included, and each read that drew it waited
// nats.go's 5 s: 200 subjects took about 20 s, and a controller of a few thousand routes started
// minutes late, with no edge liveness meanwhile. A read is asked again while no copy answers.
func TestLastOfReadsEverySubjectSoonWhileAReplicaHangs(t *testing.T) {
	const subjects = 200
	c := eventstest.StartCluster(t, 3)
	ctx := context.Background()
	admin, err := jetstream.New(eventstest.Connect(t, c.URLs[0]))
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	eventstest.Eventually(t, 10*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err = admin.CreateStream(cctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3,
			AllowDirect: true, Storage: jetstream.MemoryStorage})
		return err == nil
	}, "the stream created: %v", err)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The reader connects to the stream's leader; a replica that leads neither the stream nor
	// the cluster's metadata hangs.
	leader, hung := -1, -1
	for i, ns := range c.Servers {
		if ns.Name() == info.Cluster.Leader {
			leader = i
		} else if hung < 0 && !ns.JetStreamIsLeader() {
			hung = i
		}
	}
	if leader < 0 || hung < 0 {
		t.Fatalf("stream leader %q: no node to hang", info.Cluster.Leader)
	}
	_, js := connectAs(t, c.URLs[leader], "t")
	var names []string
	for i := range subjects {
		e, err := events.New(events.TypeRouteComputed, "test", time.Now(), struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, fmt.Sprintf("t.%d", i))
		if _, err := events.Publish(ctx, js, names[i], e); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.Servers {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return c.Knows(i, "$JS.API.DIRECT.GET.T") == 3 && c.Knows(i, "$JS.API.DIRECT.GET.T.>") == 3
		}, "node %d knowing the direct gets of all three replicas", i)
	}
	// Every replica holds every message before one hangs.
	eventstest.Eventually(t, 5*time.Second, func() bool { return allHold(c.Servers, "T", subjects) }, "every replica holding the %d messages", subjects)
	c.Silence(hung)
	if st, err = js.Stream(ctx, "T"); err != nil {
		t.Fatal(err)
	}

	start, read := time.Now(), 0
	err = events.LastOf(ctx, st, names, func(string, events.Envelope) { read++ })
	took := time.Since(start)
	t.Logf("%d of %d subjects read in %s with the replica on n%d hung", read, subjects, took.Round(time.Millisecond), hung)
	if err != nil || read != subjects {
		t.Errorf("read %d of %d subjects (%v), want every one", read, subjects, err)
	}
	if limit := 3 * time.Second; took > limit {
		t.Errorf("%d subjects read in %s, want within %s: reads waited for the hung replica", subjects, took.Round(time.Millisecond), limit)
	}
}

// allHold reports whether every server's replica of stream holds n messages.
func allHold(servers []*server.Server, stream string, n int) bool {
	for _, ns := range servers {
		jsz, err := ns.Jsz(&server.JSzOptions{Streams: true})
		if err != nil {
			return false
		}
		held := false
		for _, a := range jsz.AccountDetails {
			for _, s := range a.Streams {
				held = held || s.Name == stream && s.State.Msgs == uint64(n)
			}
		}
		if !held {
			return false
		}
	}
	return true
}

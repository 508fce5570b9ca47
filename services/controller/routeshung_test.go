package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAControllerStartingWhileROUTESLeaderHangsRecordsEdgesAtOnce: the node leading ROUTES (and
// neither STATE nor the cluster's metadata) hangs as a controller starts. The controller opened
// ROUTES and read the routes it holds before anything else, and both wait for ROUTES's leader:
// it started, and recorded the first edge's heartbeat, only once the other two nodes had
// elected another, 5–10 s later, and a leader that hangs with its node in quorum would hold it
// for as long. It starts at once, records the edge's liveness in STATE within 2 s (0.1 s after
// it was run, 0.3 s where its STATE consumer was placed on the hung node: it reads STATE by
// direct gets while the consumer's creation goes unanswered), and stores its routes once ROUTES
// answers again.
func TestAControllerStartingWhileROUTESLeaderHangsRecordsEdgesAtOnce(t *testing.T) {
	const edges = 30
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Streams(t)
	cfg := eventstest.Config(t, manyEdgesDoc(edges))
	run := func(name string, js jetstream.JetStream) (*eventstest.Logs, func()) {
		var logs eventstest.Logs
		stop := eventstest.Run(t, name, func(ctx context.Context) error {
			return Run(ctx, Options{JS: js, Config: cfg, Name: name, Log: zerolog.New(&logs)})
		})
		return &logs, stop
	}
	routes, err := admin.Stream(ctx, events.StreamRoutes)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := run("controller-1", admin)
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(routesPerSubject(ctx, routes)) == edges }, "every edge's route stored")
	stop()

	hung := leadApart(t, c, admin, events.StreamRoutes)
	reader := (hung + 1) % len(c.Servers)
	_, js := eventstest.ConnectJS(t, c.URLs[reader])
	state, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	c.Silence(hung)
	start := time.Now()
	logs, _ := run("controller-2", js)
	e, err := events.New(events.TypeEdgeHeartbeat, "test", time.Now(), events.Heartbeat{Edge: "edge0", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	heartbeat, _ := json.Marshal(e)
	var took time.Duration
	eventstest.Eventually(t, 30*time.Second, func() bool {
		_ = js.Conn().Publish(events.HeartbeatSubject("edge0"), heartbeat)
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		up, _, ok, err := events.Last(lctx, state, events.EdgeStateSubject("edge0"))
		took = time.Since(start)
		return err == nil && ok && up.Type == events.TypeEdgeUp
	}, "edge0 recorded up by controller-2")
	t.Logf("controller-2 recorded edge0 up %s after it was run, with ROUTES's leader on n%d hung", took.Round(time.Millisecond), hung)
	if limit := 2 * time.Second; took > limit {
		t.Errorf("controller-2 recorded edge0 up %s after it was run, want within %s with ROUTES's leader on n%d hung; it logged:\n%s",
			took.Round(time.Millisecond), limit, hung, logs)
	}
	eventstest.Eventually(t, 30*time.Second, func() bool { return logs.Count("stored routes read") == 1 },
		"controller-2 reading the stored routes once ROUTES elected another leader")
	t.Logf("controller-2 read the stored routes %s after it was run", time.Since(start).Round(time.Millisecond))
}

// routesPerSubject counts the routes ROUTES's leader holds for each subject; nil when it does not
// answer within a second.
func routesPerSubject(ctx context.Context, routes jetstream.Stream) map[string]uint64 {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := routes.Info(ctx, jetstream.WithSubjectFilter(events.SubjectRoutes))
	if err != nil {
		return nil
	}
	return info.State.Subjects
}

// leadApart has the named stream led by a node that leads neither STATE nor the cluster's
// metadata, so that hanging it leaves both answering, and returns that node.
func leadApart(t *testing.T, c *eventstest.Cluster, js jetstream.JetStream, stream string) int {
	t.Helper()
	leaderOf := func(name string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, name)
		if err != nil {
			return ""
		}
		return st.CachedInfo().Cluster.Leader
	}
	node := -1
	eventstest.Eventually(t, 30*time.Second, func() bool {
		state, led := leaderOf(events.StreamState), leaderOf(stream)
		if state == "" || led == "" {
			return false
		}
		want := -1
		for i, ns := range c.Servers {
			if ns.Name() != state && !ns.JetStreamIsLeader() {
				want = i
				if ns.Name() == led {
					node = i
					return true
				}
			}
		}
		if want >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, c.Servers[want].Name())
			_, _ = js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req))
		}
		return false
	}, "%s led by a node leading neither STATE nor the cluster's metadata", stream)
	return node
}

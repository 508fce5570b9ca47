package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
)

// TestARoleWhoseDirectGetsAreRefusedSaysSoOnceNotPerGet: a prober upgraded before accounts.conf
// (its user lacks $JS.API.DIRECT.GET.CONFIG) while its configuration consumer cannot be created
// (here refused too, as a hung node leaves it unanswered) reads CONFIG by direct gets, each sent
// again every 50 ms while unanswered, and the server refuses each copy: the role wrote a `nats
// error` line per copy, about twenty a second, for as long as it had no consumer. It says each
// refusal once a minute, with the count held back.
func TestARoleWhoseDirectGetsAreRefusedSaysSoOnceNotPerGet(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	const user = "prober-9"
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "operator", Password: "operator-demo"},
			{Username: user, Password: user + "-demo", Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{">"},
				Deny: []string{"$JS.API.STREAM.CREATE.>", "$JS.API.DIRECT.GET.CONFIG", "$JS.API.CONSUMER.CREATE.CONFIG.>"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	t.Cleanup(s.Shutdown)
	addr := strings.TrimPrefix(s.ClientURL(), "nats://")
	op, err := connect("nats://operator:operator-demo@"+addr, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Conn().Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(ctx, op, "detour.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	startRoleLogging(t, runProber, &logs, "--nats", "nats://"+user+":"+user+"-demo@"+addr, "--region", "us-west", "--name", "p9", "--log-format", "json")
	refused := func() int {
		return strings.Count(logs.String(), `Permissions Violation for Publish to \"$JS.API.DIRECT.GET.CONFIG\"`)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return refused() > 0 }, "no direct get of CONFIG refused")
	// A window of time, not a wait for an event: the rate of lines is what an operator sees.
	time.Sleep(3 * time.Second)
	if n := refused(); n != 1 {
		t.Errorf("the refusal of the direct gets of CONFIG logged %d times in 3 s, want once:\n%s", n, logs.String())
	}
}

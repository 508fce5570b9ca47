package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// startCreators runs JetStream in process with the user operator, who may do anything, and the
// users role and each of roles, who may do anything but create a stream (as the role users of the
// compose deployment), each with the password <name>-demo. It returns the server's address and
// the operator's JetStream.
func startCreators(t *testing.T, roles ...string) (string, jetstream.JetStream) {
	t.Helper()
	users := []*server.User{{Username: "operator", Password: "operator-demo"}}
	for _, name := range append([]string{"role"}, roles...) {
		users = append(users, &server.User{Username: name, Password: name + "-demo", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.CREATE.>"}}}})
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: users})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	t.Cleanup(s.Shutdown)
	addr := strings.TrimPrefix(s.ClientURL(), "nats://")
	js, err := connect("nats://operator:operator-demo@"+addr, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(js.Conn().Close)
	return addr, js
}

// writeConfig writes the failover document for a role's --config.
func writeConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "detour.yaml")
	if err := os.WriteFile(path, []byte(failoverDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestARoleThatMayNotCreateTheStreamsItNeedsSaysSoOnceAndWaitsForThem(t *testing.T) {
	addr, op := startCreators(t)
	var logs eventstest.Logs
	eventstest.Run(t, "decider", func(ctx context.Context) error {
		return runDecider(ctx, []string{"--nats", "nats://role:role-demo@" + addr, "--config", writeConfig(t),
			"--name", "decider-1", "--log-format", "json"}, nil, &logs)
	})
	const refused = "streams missing, and this role may not create them; run detour apply as the operator: the role waits for them"
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(refused) > 0 }, "no word of the streams the decider may not create")
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, refused) && !strings.Contains(line, `"streams":["STATE","PROBES"]`) {
			t.Errorf("the line does not name the missing streams STATE and PROBES: %s", line)
		}
	}
	// The operator runs detour apply: the decider's followers find the streams.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, err := op.Consumer(ctx, events.StreamState, "role")
		return err == nil
	}, "the decider does not follow STATE after the operator made it")
	if n := logs.Count(refused); n != 1 {
		t.Errorf("the decider said %d times that it may not create the streams, want once:\n%s", n, logs.String())
	}
	for _, noise := range []string{"nats error", "streams not provisioned", "probe results stream bounds unknown"} {
		if logs.Count(noise) > 0 {
			t.Errorf("the refusal was also logged as %q:\n%s", noise, logs.String())
		}
	}
}

func TestARoleThatMayCreateTheStreamsItNeedsCreatesThoseMissing(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	var logs eventstest.Logs
	eventstest.Run(t, "prober", func(ctx context.Context) error {
		return runProber(ctx, []string{"--nats", ns.URL, "--config", writeConfig(t), "--region", "us-west", "--name", "p1",
			"--log-format", "json"}, nil, &logs)
	})
	var names []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		names = names[:0]
		l := ns.JS.StreamNames(context.Background())
		for n := range l.Name() {
			names = append(names, n)
		}
		slices.Sort(names)
		return slices.Equal(names, []string{events.StreamProbers, events.StreamProbes})
	}, "the prober made streams %q, want its own", &names)
	// Its worker finds the bucket made and announces itself.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		kv, err := ns.JS.KeyValue(context.Background(), events.BucketProbers)
		if err != nil {
			return false
		}
		_, err = kv.Get(context.Background(), "us-west.p1")
		return err == nil
	}, "the prober did not announce itself in the bucket it made")
	// As detour apply makes it: refusing roll-ups, which would purge every region's records.
	if ns.Stream(t, events.StreamProbers).CachedInfo().Config.AllowRollup {
		t.Error("the bucket the prober made allows roll-ups")
	}
}

func TestAProberAnnouncesTheMemberTTLItWasGiven(t *testing.T) {
	ns := eventstest.Start(t)
	eventstest.Run(t, "prober", func(ctx context.Context) error {
		return runProber(ctx, []string{"--nats", ns.URL, "--config", writeConfig(t), "--region", "us-west", "--name", "p1",
			"--member-ttl", "5s", "--log-level", "error"}, nil, io.Discard)
	})
	var rec prober.Member
	eventstest.Eventually(t, 5*time.Second, func() bool {
		kv, err := ns.JS.KeyValue(context.Background(), events.BucketProbers)
		if err != nil {
			return false
		}
		e, err := kv.Get(context.Background(), "us-west.p1")
		if err != nil {
			return false
		}
		rec, err = prober.DecodeMember(e.Value())
		return err == nil
	}, "the prober to announce itself")
	if rec.TTL() != 5*time.Second {
		t.Errorf("the prober's record claims a ttl of %s, want the 5s of --member-ttl", rec.TTL())
	}
}

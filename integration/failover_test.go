//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	checkInterval = 500 * time.Millisecond
	checkFall     = 3
	checkRise     = 2
)

// TestAClusterFailsOverAndBackThroughContainerCrashes runs Detour as it is deployed: three
// JetStream nodes with per-process users, probers in two regions, two deciders and a DNS server, each
// its own container. A backend container is killed and the answer moves; then a decider and a
// JetStream node are killed and the backend returns, and the answer follows it back; then every
// JetStream node is killed and the DNS server keeps answering from what it last knew.
func TestAClusterFailsOverAndBackThroughContainerCrashes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.natsCluster()
	west, east := c.prefix+".11", c.prefix+".12"
	c.runAt(west, "backend-west", nil, []string{"backend", "--name", "us-west", "--listen", "0.0.0.0:8081"}, nil, nil, wait.ForLog("demo backend"))
	c.runAt(east, "backend-east", nil, []string{"backend", "--name", "us-east", "--listen", "0.0.0.0:8081"}, nil, nil, wait.ForLog("demo backend"))

	cfg := filepath.Join(t.TempDir(), "detour.yaml")
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    check: {type: http, path: /healthz, interval: %s, timeout: 300ms, fall: %d, rise: %d}
    pools:
      - {name: us-west, region: us-west, endpoints: [{address: "%s:8081"}]}
      - {name: us-east, region: us-east, endpoints: [{address: "%s:8081"}]}
`, checkInterval, checkFall, checkRise, west, east)
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		fatalf(t, "%v", err)
	}
	// The roles start first, as beside the compose file's apply service: until the operator has
	// run detour apply there is no stream and no configuration, and each role waits for them.
	for _, r := range []struct {
		name, user string
		args       []string
	}{
		{"prober-west", "prober-us-west-1", []string{"prober", "--region", "us-west", "--name", "west-1"}},
		{"prober-east", "prober-us-east-1", []string{"prober", "--region", "us-east", "--name", "east-1"}},
		{"decider-1", "decider-1", []string{"decider", "--name", "decider-1"}},
		{"decider-2", "decider-2", []string{"decider", "--name", "decider-2"}},
		{"dns-1", "dns-1", []string{"dns", "--name", "dns-1", "--addr", "0.0.0.0:53", "--data-dir", "/tmp/dns"}},
	} {
		c.run(r.name, nil, append(r.args, "--nats", c.natsURL(r.user), "--log-format", "json"), nil, nil, nil)
	}
	// The operator applies the configuration from outside the cluster, as from a laptop; the
	// cluster elects its JetStream leader meanwhile, so apply is retried until it lands.
	var out []byte
	eventually(t, 60*time.Second, func() bool {
		var err error
		out, err = exec.Command(detourBin, "apply", cfg, "--replicas", "3", "--nats",
			fmt.Sprintf("nats://operator:operator-demo@%s:4222", c.ip("nats-1"))).CombinedOutput()
		return err == nil
	}, "detour apply: %s", &out)

	dnsAddr := c.ip("dns-1") + ":53"
	isAnswer := func(ip string) func() bool {
		return func() bool { return slices.Equal(answer(dnsAddr, "shop.demo.test"), []string{ip}) }
	}

	eventually(t, 60*time.Second, isAnswer(west), "the cluster answers the us-west backend %s", west)
	// A pool no decider has decided yet is served too, so the answer can be west before STATE
	// holds anything for it; what follows is about a decided endpoint: wait until it is up.
	operator := fmt.Sprintf("nats://operator:operator-demo@%s:4222", c.ip("nats-1"))
	eventually(t, 60*time.Second, func() bool {
		log, err := readState(operator, "detour.state.endpoint.shop.us-west.>")
		return err == nil && len(log) > 0 && log[len(log)-1].To == "up"
	}, "STATE records the us-west endpoint up")

	c.kill("backend-west")
	took := eventually(t, checkInterval*checkFall+3*time.Second, isAnswer(east), "the answer moves to us-east %s", east)
	t.Logf("backend killed → answer moved in %s", took)

	// Losing a JetStream node costs a stream-leader election (2–5 s here, during which probe
	// results cannot be stored) before the surviving decider sees the backend again.
	c.kill("decider-1")
	c.kill("nats-2")
	c.start("backend-west")
	if ip := c.ip("backend-west"); ip != west {
		fatalf(t, "backend-west came back on %s, not its configured %s", ip, west)
	}
	took = eventually(t, checkInterval*checkRise+10*time.Second, isAnswer(west), "the answer returns to us-west %s with one decider and one JetStream node down", west)
	t.Logf("backend back (one decider and one JetStream node down) → answer returned in %s", took)

	// Through the crashes every change was recorded once: the west endpoint went up, down, up.
	got := transitions(t, operator, "detour.state.endpoint.shop.us-west.>")
	if want := []string{"up", "down", "up"}; !slices.Equal(got, want) {
		errorf(t, "us-west endpoint transitions in STATE = %v, want %v", got, want)
	}

	c.kill("nats-1")
	c.kill("nats-3")
	for range 20 {
		if got := answer(dnsAddr, "shop.demo.test"); !slices.Equal(got, []string{west}) {
			fatalf(t, "with JetStream gone the DNS server answered %v, want its last answer [%s]", got, west)
		}
	}
}

// detourBin is the operator's binary, built by TestMain for this machine, this run's own.
var detourBin = filepath.Join(os.TempDir(), binPrefix+strconv.Itoa(os.Getpid()))

const binPrefix = "detour-integration-bin-"

package cli

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

const failoverDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 1
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.12:8081"}]}
`

// startRole runs a role command until the returned stop is called, which checks it returned nil;
// a test that fails shows what the role logged.
func startRole(t *testing.T, cmd command, args ...string) (stop func()) {
	t.Helper()
	return startRoleLogging(t, cmd, new(eventstest.Logs), args...)
}

// startRoleLogging is startRole, the role logging to stderr too.
func startRoleLogging(t *testing.T, cmd command, stderr *eventstest.Logs, args ...string) (stop func()) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	return eventstest.Run(t, strings.Join(args, " "), func(ctx context.Context) error {
		return cmd(ctx, args, io.Discard, stderr)
	})
}

// startDNS runs the dns role with args on a port it binds itself (--addr 127.0.0.1:0) and
// returns the address it serves, as its log says, where a test that picked the port by opening
// and closing a listener had it handed to another test's socket now and then before the server
// bound it.
func startDNS(t *testing.T, args ...string) (addr string, stop func()) {
	t.Helper()
	var logs eventstest.Logs
	stop = startRoleLogging(t, runDNS, &logs, append(args, "--addr", "127.0.0.1:0", "--log-format", "json")...)
	return loggedAddr(t, &logs, "dns server listening"), stop
}

// loggedAddr waits for a role's JSON log line whose message is msg and returns its addr: where
// the role listens on a port it bound itself.
func loggedAddr(t *testing.T, logs *eventstest.Logs, msg string) (addr string) {
	t.Helper()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		for line := range strings.Lines(logs.String()) {
			var l struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Message == msg {
				addr = l.Addr
				return true
			}
		}
		return false
	}, "the role to log %q", msg)
	return addr
}

func answer(t *testing.T, addr string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("shop.demo.test.", dns.TypeA)
	c := dns.Client{Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func mark(t *testing.T, ns *eventstest.Server, to events.Status, last *uint64) {
	t.Helper()
	typ := map[events.Status]string{events.StatusDown: events.TypeEndpointDown, events.StatusUp: events.TypeEndpointUp}[to]
	e, err := events.New(typ, "test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: to})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Append(context.Background(), ns.JS, events.EndpointStateSubject("shop", "west", "w1"), e, *last)
	if err != nil {
		t.Fatal(err)
	}
	*last = ack.Sequence
}

func TestADNSServerRestartedWhileNATSIsAwayAnswersFromItsSnapshotAndCatchesUp(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	if _, _, err := config.Apply(context.Background(), ns.JS, "test.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "dns")
	args := []string{"--nats", ns.URL, "--data-dir", dir, "--name", "dns-1"}
	var last uint64

	addr, stop := startDNS(t, args...)
	mark(t, ns, events.StatusDown, &last)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(answer(t, addr), []string{"127.0.0.12"}) }, "the failover answer")
	stop()

	ns.Stop()
	addr, _ = startDNS(t, args...)
	// No NATS: the configuration and the answers come from the data directory.
	eventstest.Eventually(t, 5*time.Second, func() bool { return answer(t, addr) != nil }, "the restarted server to answer")
	for range 10 {
		if got := answer(t, addr); !slices.Equal(got, []string{"127.0.0.12"}) {
			t.Fatalf("restarted without NATS, the server answered %v, want its snapshot's [127.0.0.12]", got)
		}
	}
	ns.Restart(t)
	eventstest.Eventually(t, 10*time.Second, ns.Conn.IsConnected, "the test's connection back")
	mark(t, ns, events.StatusUp, &last)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(answer(t, addr), []string{"127.0.0.11"}) },
		"a change stored after NATS returned to reach the answer")
}

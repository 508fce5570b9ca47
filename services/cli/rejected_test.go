package cli

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// A DNS server records its refusal of a configuration version on the subject of its NATS user,
// where it records its zones' versions, whatever its --name: the deployment's accounts let the
// user dns-1 publish only detour.config.rejected.dns.dns-1, and a refusal recorded under a name
// of another would be refused by the server, leaving no word of it in CONFIG.
func TestADNSServerRecordsItsRefusalOfAVersionUnderItsUser(t *testing.T) {
	addr, op := startCreators(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(ctx, op, "detour.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := l.Addr().String()
	l.Close()
	startRole(t, runDNS, "--nats", "nats://role:role-demo@"+addr, "--name", "dns-east-7",
		"--addr", dnsAddr, "--data-dir", filepath.Join(t.TempDir(), "dns"), "--log-format", "json")
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 }, "the DNS server does not answer on %s", dnsAddr)
	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: "zones: []\nfuture_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op, events.SubjectConfigDoc, bad)
	if err != nil {
		t.Fatal(err)
	}
	st, err := op.Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	var rej config.Rejected
	eventstest.Eventually(t, 10*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, config.RejectedSubject("dns", "role"))
		return err == nil && ok && e.Payload(&rej) == nil && rej.Version == ack.Sequence
	}, "no refusal of version %d on %s", ack.Sequence, config.RejectedSubject("dns", "role"))
}

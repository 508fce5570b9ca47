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

// Every role records its refusal of a configuration version on the subject of its NATS user,
// where the deployment's accounts let it publish, whatever its --name: the user dns-1 may publish
// only detour.config.rejected.dns.dns-1, the user prober-us-west-1 only
// detour.config.rejected.prober.us-west.prober-us-west-1, and a refusal recorded under a name of
// another would be refused by the server, leaving no word of it in REJECTIONS.
func TestEveryRoleRecordsItsRefusalOfAVersionUnderItsUser(t *testing.T) {
	// Each role has a NATS user of its own, as the deployment requires: roles of one user share
	// its consumers, and one's configuration watch would take the others' versions.
	addr, op := startCreators(t, "dns-7", "prober-7", "decider-7", "controller-7")
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
	url := func(user string) string { return "nats://" + user + ":" + user + "-demo@" + addr }
	startRole(t, runDNS, "--nats", url("dns-7"), "--name", "dns-east-7",
		"--addr", dnsAddr, "--data-dir", filepath.Join(t.TempDir(), "dns"), "--log-format", "json")
	startRole(t, runProber, "--nats", url("prober-7"), "--region", "us-west", "--name", "p7", "--log-format", "json")
	startRole(t, runDecider, "--nats", url("decider-7"), "--name", "d7", "--log-format", "json")
	startRole(t, runController, "--nats", url("controller-7"), "--name", "c7", "--api-addr", "", "--log-format", "json")
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 }, "the DNS server does not answer on %s", dnsAddr)
	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: "zones: []\nfuture_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op, events.SubjectConfigDoc, bad)
	if err != nil {
		t.Fatal(err)
	}
	st, err := op.Stream(ctx, events.StreamRejections)
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{config.RejectedSubject("dns", "dns-7"), config.RejectedSubject("prober", "us-west", "prober-7"),
		config.RejectedSubject("decider", "decider-7"), config.RejectedSubject("controller", "controller-7")} {
		var rej config.Rejected
		eventstest.Eventually(t, 10*time.Second, func() bool {
			e, _, ok, err := events.Last(ctx, st, subject)
			return err == nil && ok && e.Payload(&rej) == nil && rej.Version == ack.Sequence
		}, "no refusal of version %d on %s", ack.Sequence, subject)
	}
}

// A role started while the active version is one it cannot parse (a newer `detour apply` wrote
// a field this binary does not know, in the middle of a rolling upgrade) starts on the newest
// version it can parse, as its running peers keep it, and records its refusal of the newer one:
// it does not exit into a restart loop.
func TestARoleStartedOnAVersionItCannotParseRunsTheNewestItCanAndRecordsTheRefusal(t *testing.T) {
	addr, op := startCreators(t, "dns-8")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(ctx, op, "detour.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: failoverDoc + "future_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op, events.SubjectConfigDoc, bad)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := l.Addr().String()
	l.Close()
	startRole(t, runDNS, "--nats", "nats://dns-8:dns-8-demo@"+addr, "--name", "dns-8",
		"--addr", dnsAddr, "--data-dir", filepath.Join(t.TempDir(), "dns"), "--log-format", "json")
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 },
		"the DNS server does not answer on %s from the version before the one it cannot parse", dnsAddr)
	st, err := op.Stream(ctx, events.StreamRejections)
	if err != nil {
		t.Fatal(err)
	}
	var rej config.Rejected
	eventstest.Eventually(t, 10*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, config.RejectedSubject("dns", "dns-8"))
		return err == nil && ok && e.Payload(&rej) == nil && rej.Version == ack.Sequence
	}, "no refusal of version %d", ack.Sequence)
}

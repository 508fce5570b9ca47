package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// Every role records its refusal of a configuration version on the subject of its NATS user,
// where the deployment's accounts let it publish, whatever its --name: the user dns-1 may publish
// only detour.config.rejected.dns.dns-1, the user prober-us-west-1 only
// detour.config.rejected.prober.us-west.prober-us-west-1, and a refusal recorded under a name of
// another would be refused by the server, leaving no word of it in REJECTIONS.
func TestEveryRoleRecordsItsRefusalOfAVersionUnderItsUser(t *testing.T) {
	// Each role has a NATS user of its own, as the deployment requires: roles of one user share
	// its consumers, and one's configuration watch would take the others' versions.
	r := startVersioned(t, "dns-7", "prober-7", "decider-7", "controller-7")
	dnsAddr, _ := startDNS(t, "--nats", r.url("dns-7"), "--name", "dns-east-7", "--data-dir", filepath.Join(t.TempDir(), "dns"))
	startRole(t, runProber, "--nats", r.url("prober-7"), "--region", "us-west", "--name", "p7", "--log-format", "json")
	startRole(t, runDecider, "--nats", r.url("decider-7"), "--name", "d7", "--log-format", "json")
	startRole(t, runController, "--nats", r.url("controller-7"), "--name", "c7", "--api-addr", "", "--log-format", "json")
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 }, "the DNS server does not answer on %s", dnsAddr)
	bad := r.unparsable(t, "zones: []\nfuture_field: 1\n")
	for _, subject := range []string{config.RejectedSubject("dns", "dns-7"), config.RejectedSubject("prober", "us-west", "prober-7"),
		config.RejectedSubject("decider", "decider-7"), config.RejectedSubject("controller", "controller-7")} {
		r.refused(t, subject, bad)
	}
}

// A role started while the active version is one it cannot parse (a newer `detour apply` wrote
// a field this binary does not know, in the middle of a rolling upgrade) starts on the newest
// version it can parse, as its running peers keep it, and records its refusal of the newer one:
// it does not exit into a restart loop.
func TestARoleStartedOnAVersionItCannotParseRunsTheNewestItCanAndRecordsTheRefusal(t *testing.T) {
	r := startVersioned(t, "dns-8")
	bad := r.unparsable(t, failoverDoc+"future_field: 1\n")
	dnsAddr, _ := startDNS(t, "--nats", r.url("dns-8"), "--name", "dns-8", "--data-dir", filepath.Join(t.TempDir(), "dns"))
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 },
		"the DNS server does not answer on %s from the version before the one it cannot parse", dnsAddr)
	r.refused(t, config.RejectedSubject("dns", "dns-8"), bad)
}

// A role started while the last message on the configuration's subject is no version at all
// (published there by hand, or by a broken tool) starts on the newest version before it, as its
// running peers keep it, and records its refusal of the message; it waited for "the active
// configuration" for good, every restart of every role of the deployment alike, until someone
// applied a document over the junk.
func TestARoleStartedOverAMessageThatIsNoVersionRunsTheNewestVersion(t *testing.T) {
	r := startVersioned(t, "dns-9")
	junk, err := r.op.Publish(context.Background(), events.SubjectConfigDoc, []byte("not an event"))
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr, _ := startDNS(t, "--nats", r.url("dns-9"), "--name", "dns-9", "--data-dir", filepath.Join(t.TempDir(), "dns"))
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(answer(t, dnsAddr)) > 0 },
		"the DNS server does not answer on %s from the version before the message that is no version", dnsAddr)
	r.refused(t, config.RejectedSubject("dns", "dns-9"), junk.Sequence)
}

// versioned is JetStream with its streams and failoverDoc applied as version 1, for roles of
// their own NATS users.
type versioned struct {
	addr string
	op   jetstream.JetStream
}

// startVersioned starts versioned with the role users named (startCreators).
func startVersioned(t *testing.T, users ...string) versioned {
	t.Helper()
	addr, op := startCreators(t, users...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(ctx, op, "detour.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	return versioned{addr: addr, op: op}
}

// url is the NATS URL of user.
func (v versioned) url(user string) string { return "nats://" + user + ":" + user + "-demo@" + v.addr }

// unparsable stores doc, which this binary cannot parse (a newer detour apply's), as the active
// version, and returns its number.
func (v versioned) unparsable(t *testing.T, doc string) uint64 {
	t.Helper()
	e, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: doc})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), v.op, events.SubjectConfigDoc, e)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// refused waits for the refusal of version on subject of REJECTIONS.
func (v versioned) refused(t *testing.T, subject string, version uint64) {
	t.Helper()
	ctx := context.Background()
	st, err := v.op.Stream(ctx, events.StreamRejections)
	if err != nil {
		t.Fatal(err)
	}
	var rej config.Rejected
	eventstest.Eventually(t, 10*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, subject)
		return err == nil && ok && e.Payload(&rej) == nil && rej.Version == version
	}, "no refusal of version %d on %s", version, subject)
}

// A role started while the only message on the configuration's subject is no version (junk
// published there by hand before anything was applied) has no version before it to start on:
// it waits for one, as it waits while nothing was applied, and starts on the first version
// applied over the junk. It returned the junk's decoding error, and did not start at all.
func TestARoleStartedOverAMessageThatIsNoVersionAndNoneBeforeWaitsForOne(t *testing.T) {
	addr, op := startCreators(t, "decider-12")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, op, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Publish(ctx, events.SubjectConfigDoc, []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	startRoleLogging(t, runDecider, &logs, "--nats", versioned{addr: addr}.url("decider-12"), "--name", "d12", "--log-format", "json")
	eventstest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "waiting for the active configuration") },
		"the decider started over a message that is no version, and none before it, does not wait for a version")
	if _, _, err := config.Apply(ctx, op, "detour.yaml", []byte(failoverDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "decider live") },
		"the decider waiting over a message that is no version did not start on the version applied over it")
}

package natsd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// JetStream drops a message whose Nats-Msg-Id it stored within the stream's duplicate window,
// on whatever subject: a prober, which may publish only its own rejections in REJECTIONS, must
// not be able to store the ids of a DNS server's next rejections first and so hide that the
// server refused a configuration version.
func TestDeploymentIdentitiesAProberCannotHideAnotherRolesRejectionOfAVersionByPublishingItsIDFirst(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	op := d.as("operator")
	_, v1, err := config.Apply(ctx, op.js, "test.yaml", []byte(`
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
`), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	configs := config.Watch(ctx, d.as("dns-1").js, v1.Number, zerolog.New(zerolog.NewTestWriter(t)), "dns", "dns-1")

	// The prober reads where CONFIG ends and stores, on its own subject, an event under the id
	// each of dns-1's rejections of the next versions would take.
	prober := d.as("prober-us-west-1")
	cfg, err := prober.js.Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	const forged = 20
	last := cfg.CachedInfo().State.LastSeq
	for v := last + 1; v <= last+forged; v++ {
		e, err := events.New(events.TypeConfigRejected, "prober/us-west/p1", time.Now(), config.Rejected{Version: v, Role: "prober/us-west/p1", Problems: []string{"forged"}})
		if err != nil {
			t.Fatal(err)
		}
		e.ID = events.DerivedID(fmt.Sprintf("config-%d", v), events.TypeConfigRejected+"|dns/dns-1")
		if _, err := events.Publish(ctx, prober.js, rejectedSubjectOf("prober-us-west-1"), e); err != nil {
			t.Fatal(err)
		}
	}
	if v := prober.errors(); len(v) > 0 {
		t.Fatalf("the prober ran into its permissions: %q", v)
	}

	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: "zones: []\nfuture_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op.js, events.SubjectConfigDoc, bad)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Sequence <= last || ack.Sequence > last+forged {
		t.Fatalf("the bad version is %d, not one of the forged ids' %d to %d", ack.Sequence, last+1, last+forged)
	}
	st, err := op.js.Stream(ctx, events.StreamRejections)
	if err != nil {
		t.Fatal(err)
	}
	var rej config.Rejected
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, config.RejectedSubject("dns", "dns-1"))
		return err == nil && ok && e.Type == events.TypeConfigRejected && e.Payload(&rej) == nil && rej.Version == ack.Sequence
	}, "dns-1's rejection of version %d is not on its subject: dropped as a duplicate of the prober's event", ack.Sequence)
	select {
	case c := <-configs:
		t.Fatalf("the rejected version was delivered: %+v", c)
	default:
	}
}

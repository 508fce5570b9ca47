package config_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const watchDoc = `
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, check: {interval: 1s}, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
`

func TestWatchDeliversEveryNewVersionAndRecordsOneItCannotApply(t *testing.T) {
	ns := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apply := func(doc string) config.Version {
		t.Helper()
		_, v, err := config.Apply(ctx, ns.JS, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := apply(watchDoc)
	ch := config.Watch(ctx, ns.JS, v1.Number, zerolog.New(zerolog.NewTestWriter(t)), "prober", "eu", "p1")
	next := func() *config.Config {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no configuration version delivered within 5s")
			return nil
		}
	}
	v2 := apply(strings.Replace(watchDoc, "interval: 1s", "interval: 2s", 1))
	c := next()
	if c.Apps[0].Check.Interval.String() != "2s" {
		t.Fatalf("delivered interval %s, want 2s", c.Apps[0].Check.Interval)
	}
	// It names the version and the event that stored it, which a role's changes name as their cause.
	stored, _, _, err := events.Last(ctx, ns.Stream(t, events.StreamConfig), events.SubjectConfigDoc)
	if err != nil || c.Version != v2.Number || c.Event != v2.Event || c.Event != stored.ID {
		t.Errorf("delivered version %d, event %q; want version %d and the stored event %q (%v)", c.Version, c.Event, v2.Number, stored.ID, err)
	}
	// A version no role can parse (written by something newer, or by hand) is recorded, not run.
	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: "zones: []\nfuture_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, ns.JS, events.SubjectConfigDoc, bad)
	if err != nil {
		t.Fatal(err)
	}
	st := ns.Stream(t, events.StreamRejections)
	var rej config.Rejected
	eventstest.Eventually(t, 5*time.Second, func() bool {
		e, _, ok, err := events.Last(ctx, st, config.RejectedSubject("prober", "eu", "p1"))
		return err == nil && ok && e.Type == events.TypeConfigRejected && e.Payload(&rej) == nil
	}, "a rejection of version %d", ack.Sequence)
	if rej.Version != ack.Sequence || rej.Role != "prober/eu/p1" || !strings.Contains(strings.Join(rej.Problems, "\n"), "future_field") {
		t.Errorf("rejection %+v, want version %d naming future_field", rej, ack.Sequence)
	}
	select {
	case c := <-ch:
		t.Fatalf("the rejected version was delivered: %+v", c)
	default:
	}
	apply(strings.Replace(watchDoc, "interval: 1s", "interval: 3s", 1))
	if c := next(); c.Apps[0].Check.Interval.String() != "3s" {
		t.Fatalf("after a rejection, delivered interval %s, want 3s", c.Apps[0].Check.Interval)
	}
}

func TestAVersionRejectedByTwoWatchesOfOneProcessAndAgainAfterARestartIsRecordedOnce(t *testing.T) {
	ns := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apply := func(doc string) config.Version {
		t.Helper()
		_, v, err := config.Apply(ctx, ns.JS, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := apply(watchDoc)
	log := zerolog.New(zerolog.NewTestWriter(t))
	watch := func() <-chan *config.Config {
		return config.Watch(ctx, ns.JS, v1.Number, log, "controller", "controller-1")
	}
	delivers := func(ch <-chan *config.Config, v uint64) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case c := <-ch:
				if c.Version == v {
					return
				}
			case <-deadline:
				t.Fatalf("version %d not delivered within 5s", v)
			}
		}
	}
	first, second := watch(), watch()
	bad, err := events.New(events.TypeConfigApplied, "elsewhere", time.Now(), events.ConfigApplied{Document: "zones: []\nfuture_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, ns.JS, events.SubjectConfigDoc, bad); err != nil {
		t.Fatal(err)
	}
	v3 := apply(strings.Replace(watchDoc, "interval: 1s", "interval: 3s", 1))
	delivers(first, v3.Number)
	delivers(second, v3.Number)
	delivers(watch(), v3.Number) // the process restarted
	subject := config.RejectedSubject("controller", "controller-1")
	info, err := ns.Stream(t, events.StreamRejections).Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != 1 {
		t.Errorf("%s holds %d rejections, want 1", subject, n)
	}
}

// A version may have thousands of problems, more than REJECTIONS takes in one message
// (events.MaxRejectionMessage): the rejection lists the first ones and how many more there were,
// and a problem alone longer than that is cut; the log line lists them all.
func TestARejectionWithMoreProblemsThanAMessageTakesIsRecordedWithTheFirstOnes(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.Disabled)
	last := func(role string) config.Rejected {
		t.Helper()
		e, _, ok, err := events.Last(ctx, ns.Stream(t, events.StreamRejections), config.RejectedSubject("dns", role))
		var r config.Rejected
		if err != nil || !ok || e.Payload(&r) != nil {
			t.Fatalf("%s's rejection: found %v, err %v", role, ok, err)
		}
		return r
	}
	var problems []string
	for i := range 5000 {
		problems = append(problems, fmt.Sprintf(`apps[%d].pools[0].endpoints[0].address: want host:port, got "<10.0.0.%d>"`, i, i%250))
	}
	config.Reject(ctx, ns.JS, 7, &config.Error{Problems: problems}, log, "dns", "many")
	r := last("many")
	n := len(r.Problems) - 1
	if r.Version != 7 || n < 100 || n >= len(problems) || !slices.Equal(r.Problems[:n], problems[:n]) ||
		r.Problems[n] != fmt.Sprintf("and %d more", len(problems)-n) {
		t.Errorf("rejection of 5000 problems: version %d, %d problems ending %q", r.Version, len(r.Problems), r.Problems[len(r.Problems)-1])
	}
	long := strings.Repeat("<", events.MaxRejectionMessage)
	config.Reject(ctx, ns.JS, 8, &config.Error{Problems: []string{long, "b"}}, log, "dns", "long")
	if r := last("long"); r.Version != 8 || len(r.Problems) != 2 || !strings.HasPrefix(long, strings.TrimSuffix(r.Problems[0], "…")) || r.Problems[1] != "and 1 more" {
		t.Errorf("rejection of a problem of %d bytes: version %d, problems of %d bytes and %q", len(long), r.Version, len(r.Problems[0]), r.Problems[1:])
	}
}

// TestAWatchStartedAsCONFIGIsCreatedAgainEndsOnItsNewestVersion: CONFIG is deleted and created
// again (an operator's `nats stream rm`, a cluster's stores lost) just after a role read the
// active version, its third. Its watch started at the fourth in the new stream, whose sequences
// start over: the two versions applied there next were never delivered, and the role ran the
// old stream's third for good. A stream that never reached the version the role read is a new
// one: the watch reads it from its first version.
func TestAWatchStartedAsCONFIGIsCreatedAgainEndsOnItsNewestVersion(t *testing.T) {
	ns := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apply := func(interval string) config.Version {
		t.Helper()
		_, v, err := config.Apply(ctx, ns.JS, "test.yaml", []byte(strings.Replace(watchDoc, "interval: 1s", "interval: "+interval, 1)), config.ApplyOptions{By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, interval := range []string{"1s", "2s", "3s"} {
		apply(interval)
	}
	read, err := config.Active(ctx, ns.JS)
	if err != nil || read.Number != 3 {
		t.Fatalf("active version %d, %v; want 3", read.Number, err)
	}
	if err := ns.JS.DeleteStream(ctx, events.StreamConfig); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	ch := config.Watch(ctx, ns.JS, read.Number, zerolog.New(zerolog.NewTestWriter(t)), "prober", "eu", "p1")
	apply("4s")
	newest := apply("5s")
	deadline := time.After(5 * time.Second)
	for {
		select {
		case c := <-ch:
			if c.Version == newest.Number && c.Event == newest.Event {
				if got := c.Apps[0].Check.Interval.String(); got != "5s" {
					t.Fatalf("newest version delivered with interval %s, want 5s", got)
				}
				return
			}
		case <-deadline:
			t.Fatalf("the newest version, %d of the new CONFIG, not delivered within 5s of its apply", newest.Number)
		}
	}
}

package config_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// inFlight is JetStream whose stream leader holds another apply still being stored: it refuses
// the first refusals publishes that expect a last sequence on the subject, as a clustered
// JetStream does while a message expecting one there is proposed and not yet committed (error
// 10164), and stores the next.
type inFlight struct {
	jetstream.JetStream
	refusals int
}

func (f *inFlight) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if f.refusals > 0 {
		f.refusals--
		return nil, &jetstream.APIError{Code: 400, ErrorCode: 10164, Description: "wrong last sequence"}
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

// An apply sent while another is being stored (its followers slow to acknowledge it) is refused
// as long as the other is in flight, the active version unchanged. It was sent again at once, 10
// times in 8-13 ms, and failed with "10 other applies were stored while this one was sent", none
// of them stored; it now waits for the other to land or fail, and is stored after it.
func TestAnApplyWaitsForAnotherStillBeingStored(t *testing.T) {
	ns := eventstest.Start(t)
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(watchDoc, "interval: 1s", "interval: 2s", 1)
	_, v, err := config.Apply(t.Context(), &inFlight{JetStream: ns.JS, refusals: 12}, "v2.yaml", []byte(v2), config.ApplyOptions{By: "bob"})
	if err != nil {
		t.Fatalf("an apply refused 12 times while another was in flight: %v", err)
	}
	if active, err := config.Active(t.Context(), ns.JS); err != nil || active.Number != v.Number || active.Document != v2 {
		t.Errorf("the active version is %d (%v), want the apply's, %d", active.Number, err, v.Number)
	}
}

// Two applies sent at once while neither can be stored (CONFIG's leader cut from both
// followers): the one the leader takes first stays in flight, the other is refused while it is.
// That one said "10 other applies were stored while this one was sent" within 8-13 ms, none
// stored; both now wait up to their bound and say it ran out.
func TestAnApplyBesideOneThatCannotBeStoredWaitsForItsBound(t *testing.T) {
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Streams(t).Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	leader, follower, third := c.Replicas(t, st)
	_, js := eventstest.ConnectJS(t, c.URLs[leader])
	if _, _, err := config.Apply(ctx, js, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	c.Cut(leader, follower)
	c.Cut(leader, third)
	type result struct {
		by   string
		err  error
		took time.Duration
	}
	results := make(chan result, 2)
	for i, by := range []string{"alice", "bob"} {
		go func() {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			defer acancel()
			doc := strings.Replace(watchDoc, "interval: 1s", fmt.Sprintf("interval: %ds", i+2), 1)
			start := time.Now()
			_, _, err := config.Apply(actx, js, by+".yaml", []byte(doc), config.ApplyOptions{By: by})
			results <- result{by, err, time.Since(start)}
		}()
	}
	for range 2 {
		r := <-results
		if r.err == nil || strings.Contains(r.err.Error(), "other applies were stored") || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s's apply, after %s: %v; want its bound of 2s run out, no other apply said stored", r.by, r.took.Round(time.Millisecond), r.err)
		}
	}
}

// An apply with --expect-version naming the active version, sent while another apply is being
// stored, was refused at once: "expected version 1, but version 1 is active (…): plan again",
// though version 1 was still active and the other apply never landed. It now waits for the
// other as an apply without --expect-version does, and is stored on top of version 1.
func TestAnApplyExpectingTheActiveVersionWaitsForAnotherStillBeingStored(t *testing.T) {
	ns := eventstest.Start(t)
	_, v1, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(watchDoc, "interval: 1s", "interval: 2s", 1)
	_, v, err := config.Apply(t.Context(), &inFlight{JetStream: ns.JS, refusals: 3}, "v2.yaml", []byte(v2),
		config.ApplyOptions{By: "bob", Expect: &v1.Number})
	if err != nil {
		t.Fatalf("an apply expecting the active version %d, refused 3 times while another was in flight: %v", v1.Number, err)
	}
	if active, err := config.Active(t.Context(), ns.JS); err != nil || active.Number != v.Number || active.Document != v2 {
		t.Errorf("the active version is %d (%v), want the apply's, %d", active.Number, err, v.Number)
	}
}

package natsd_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// A consumer's definition is in the body of the request that creates it, where permissions
// cannot look: a role may make its own consumer a push consumer, which JetStream delivers on a
// subject of the account of the streams, and name as that subject the pull or the reset of
// another process's consumer there. What it reads is then a pull request taking that consumer's
// messages, or a reset moving it past messages its reader never gets. An edge, which faces the
// Internet, must not be able to: its consumers read only what the operator and the controller
// write, never a body of its own (its rejections of a version). Here dns-1 follows STATE while
// edge-west tries every push it may make, with a rejection asking for a reset past the first
// two transitions and a pull of two: dns-1 still gets every transition.
func TestDeploymentIdentitiesAnEdgeCannotMakeADNSServerSkipTransitionsThroughAPushConsumerOfItsOwn(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := events.Publish(ctx, d.as("operator").js, events.SubjectConfigDoc, mustEvent(t)); err != nil {
		t.Fatal(err)
	}
	victim := d.as("dns-1")
	seqs := make(chan uint64, 16)
	caught := make(chan struct{})
	f := events.Follower{JS: victim.js, Stream: events.StreamState, Log: zerolog.New(zerolog.NewTestWriter(t)),
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectState}}}
	eventstest.Run(t, "dns-1's follower of STATE", func(ctx context.Context) error {
		f.Run(ctx, func(d events.Delivery) {
			if d.CaughtUp && d.Seq == 0 {
				close(caught)
			}
			if d.Msg != nil {
				seqs <- d.Seq
			}
		})
		return nil
	})
	select {
	case <-caught:
	case <-ctx.Done():
		t.Fatal("dns-1's follower did not catch up with an empty STATE")
	}

	edge := d.as("edge-west")
	if err := edge.nc.Publish(config.RejectedSubject("edge", "edge-west"), []byte(`{"seq":3,"batch":2}`)); err != nil {
		t.Fatal(err)
	}
	name := events.ConsumerName("edge-west", "config")
	for _, target := range []string{"$JS.API.CONSUMER.RESET.STATE.dns-1", "$JS.API.CONSUMER.MSG.NEXT.STATE.dns-1"} {
		for _, filter := range []string{events.SubjectConfig, events.SubjectConfigDoc} {
			_, _ = edge.nc.Request("$JS.API.CONSUMER.DELETE.CONFIG."+name, nil, 300*time.Millisecond)
			req, err := json.Marshal(map[string]any{"stream_name": events.StreamConfig, "config": map[string]any{
				"name": name, "filter_subject": filter, "deliver_subject": target, "deliver_policy": "all",
				"ack_policy": "none", "inactive_threshold": int64(time.Minute)}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := edge.nc.Request("$JS.API.CONSUMER.CREATE.CONFIG."+name+"."+filter, req, 300*time.Millisecond); err != nil {
				continue // refused
			}
			// Until it has delivered all it reads.
			eventstest.Eventually(t, 5*time.Second, func() bool {
				m, err := edge.nc.Request("$JS.API.CONSUMER.INFO.CONFIG."+name, nil, 300*time.Millisecond)
				var info jetstream.ConsumerInfo
				return err == nil && json.Unmarshal(m.Data, &info) == nil && info.NumPending == 0 && info.Delivered.Consumer > 0
			}, "edge-west's push consumer of %s delivered nothing to %s", filter, target)
		}
	}

	dec := d.as("decider-1")
	for range 5 {
		if _, err := events.Publish(ctx, dec.js, events.EndpointStateSubject("shop", "west", "w1"), mustEvent(t)); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for {
			select {
			case s := <-seqs:
				got = append(got, s)
			default:
				return len(got) >= 5
			}
		}
	}, "dns-1 got STATE's transitions %v, want 1 to 5", &got)
	if !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("dns-1 got STATE's transitions %v, want 1 to 5", got)
	}
}

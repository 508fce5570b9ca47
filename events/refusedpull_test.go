package events_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestARefusedPullTakesNoMessageFromTheConsumer: a follower whose new consumer lives on another
// node sends it events.RefusedPull until it answers. The consumer acknowledges nothing (AckNone):
// were that request taken for a pull, the messages it delivered to the request's inbox, which no
// one reads, would be lost to the follower. The consumer refuses each one (400) and delivers
// nothing, and the pull that follows gets every message from the first.
func TestARefusedPullTakesNoMessageFromTheConsumer(t *testing.T) {
	const stored, probes = 5, 20
	srv := eventstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	for range stored {
		if _, err := srv.JS.Publish(ctx, "t.x", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	// As a follower creates its consumer (Follower.once).
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Name: "c", FilterSubject: "t.>",
		DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute,
		MemoryStorage: true, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range probes {
		m, err := srv.Conn.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.T.c", events.RefusedPull)
		if err != nil {
			t.Fatalf("refused pull %d: %v", i, err)
		}
		if status := m.Header.Get("Status"); status != "400" || len(m.Data) != 0 {
			t.Fatalf("refused pull %d answered status %q (%s), %d bytes; want 400 and none", i, status, m.Header.Get("Description"), len(m.Data))
		}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 0 || info.NumWaiting != 0 || info.NumPending != stored {
		t.Fatalf("after %d refused pulls the consumer delivered %d, has %d pulls waiting and %d messages pending; want 0, 0, %d",
			probes, info.Delivered.Consumer, info.NumWaiting, info.NumPending, stored)
	}
	batch, err := cons.Fetch(stored, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, meta.Sequence.Stream)
	}
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(seqs, want) {
		t.Fatalf("the pull after the refused ones got %v, want %v", seqs, want)
	}
}

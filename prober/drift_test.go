package prober

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAWorkerWarnsWhileItsBucketAllowsRollUpsAndSaysSoWhenMended has the membership bucket's
// stream allow roll-ups, as an earlier version's `detour apply` leaves it, while a worker watches
// it: the worker warns once, however many times it looks, and says once that the bucket refuses
// them again when the current definition is applied.
func TestAWorkerWarnsWhileItsBucketAllowsRollUpsAndSaysSoWhenMended(t *testing.T) {
	srv, js, kv, ctx := membersBucket(t)
	old := srv.Stream(t, events.StreamProbers).CachedInfo().Config
	old.AllowRollup = true
	if _, err := js.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}

	logs := &eventstest.Logs{}
	looks := watching(t, ctx, kv, logs)

	const warning = rollupsWarning
	waitFor(t, "the warning", func() bool { return logs.Count(warning) > 0 })
	// Several more looks at the same definition add no line.
	after := looks.Load() + 5
	waitFor(t, "five more looks", func() bool { return looks.Load() >= after })
	if n := logs.Count(warning); n != 1 {
		t.Fatalf("want the warning once while the bucket allows roll-ups, got %d:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Fatalf("want the line at warn level:\n%s", logs)
	}

	// What detour apply runs.
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mended note", func() bool { return logs.Count(rollupsMended) == 1 })
	if n := logs.Count(warning); n != 1 {
		t.Fatalf("want no further warning once mended, got %d:\n%s", n, logs)
	}
}

// TestAWorkerSaysNothingOfABucketThatRefusesRollUps watches the bucket as the current version
// makes it: no line at all.
func TestAWorkerSaysNothingOfABucketThatRefusesRollUps(t *testing.T) {
	_, _, kv, ctx := membersBucket(t)
	if allowed, ok := allowsRollups(ctx, kv); !ok || allowed {
		t.Fatalf("the bucket as made: want roll-ups refused and read, got allowed %v read %v", allowed, ok)
	}
	logs := &eventstest.Logs{}
	looks := watching(t, ctx, kv, logs)
	waitFor(t, "five looks", func() bool { return looks.Load() >= 5 })
	if s := logs.String(); s != "" {
		t.Fatalf("want no line for a bucket that refuses roll-ups, got:\n%s", s)
	}
}

// watching runs watchRollups on kv every 10 ms until the test ends, logging to logs, and
// returns the count of the definitions it read.
func watching(t *testing.T, ctx context.Context, kv jetstream.KeyValue, logs *eventstest.Logs) *atomic.Int64 {
	t.Helper()
	looks := &atomic.Int64{}
	read := func(ctx context.Context) (bool, bool) {
		allowed, ok := allowsRollups(ctx, kv)
		if ok {
			looks.Add(1)
		}
		return allowed, ok
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); watchRollups(wctx, read, 10*time.Millisecond, zerolog.New(logs)) }()
	t.Cleanup(func() { stop(); <-done })
	return looks
}

// waitFor polls cond every 5 ms and fails the test when it does not hold within 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// membersBucket starts a NATS server with the streams made and returns it, a JetStream context
// on it, the membership bucket and a context that ends with the test (30 s at most).
func membersBucket(t *testing.T) (*eventstest.Server, jetstream.JetStream, jetstream.KeyValue, context.Context) {
	t.Helper()
	srv := eventstest.Start(t)
	js, err := jetstream.New(eventstest.Connect(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	kv, err := js.KeyValue(ctx, MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, kv, ctx
}

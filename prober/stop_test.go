package prober

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAProberStoppedWhileStartingReturnsNil stops a prober at moments spread over its start
// (reading its region's members, storing its own record, its first checks): whenever it is
// stopped, stopping is no failure. A prober stopped once its first record is stored runs on for
// JoinDelay, until the others can have seen that it stops (Run); the default, a heartbeat
// (333 ms here), took most of the test's time, as most of the moments come after that record.
func TestAProberStoppedWhileStartingReturnsNil(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools: [{name: west, endpoints: [{address: "127.0.0.1:9"}]}]
`)
	for i := range 60 {
		ctx, cancel := context.WithCancel(context.Background())
		// The moment of the stop is the scenario: from at once to 12 ms into the start.
		stop := time.AfterFunc(time.Duration(i)*200*time.Microsecond, cancel)
		err := Run(ctx, Options{JS: srv.JS, Config: cfg, Region: "local", Name: "p1", Log: zerolog.Nop(),
			JoinDelay: 10 * time.Millisecond})
		stop.Stop()
		cancel()
		if err != nil {
			t.Fatalf("stopped %s into its start, the prober returned %v, want nil", time.Duration(i)*200*time.Microsecond, err)
		}
	}
}

// TestAWorkerStoppedWhileNATSIsDownAndACheckHangsExitsWithinDockersStopTimeout stops a worker
// whose NATS server is gone while one of its checks waits on an endpoint that never answers: it
// returns within StopGrace and the 4 s its last results and its leaving may wait for NATS,
// under the 10 s docker stop waits before it kills. The wait for the record saying when it
// stops and the wait for its checks in flight each had StopGrace of their own, one after the
// other, so it took 11 s (and 14 with a long --member-ttl) and was killed.
func TestAWorkerStoppedWhileNATSIsDownAndACheckHangsExitsWithinDockersStopTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 10 seconds")
	}
	srv := eventstest.Start(t)
	asked := make(chan struct{}, 1)
	addr := tcpServer(t, func(c net.Conn) {
		select {
		case asked <- struct{}{}:
		default:
		}
		_, _ = io.Copy(io.Discard, c) // reads and never answers
	})
	// The check's first window comes up to its interval after the start, wherever its key's hash
	// puts it: its endpoint is named for one coming once the worker has joined (a heartbeat, 1 s,
	// after its start), so the test waits about 2 s for it rather than up to 10.
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 10s, timeout: 10s, send: "PING\r\n", expect: "+PONG"}
    pools: [{name: west, endpoints: [{name: `+endpointDueIn(t, 10*time.Second, 1500*time.Millisecond)+`, address: "`+addr+`"}]}]
`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Run(ctx, Options{JS: srv.JS, Config: cfg, Region: "local", Name: "p1", Log: zerolog.New(zerolog.NewTestWriter(t)),
			MemberTTL: 10 * time.Second})
	}()
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatal("the check never reached its endpoint")
	}
	srv.Stop()
	stopped := time.Now()
	cancel()
	select {
	case <-done:
		t.Logf("stopped in %s", time.Since(stopped).Round(10*time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop")
	}
	if took := time.Since(stopped); took > StopGrace+4*time.Second+500*time.Millisecond {
		t.Fatalf("stopped in %s, want within StopGrace and 4 s (%s), under docker's 10 s", took, StopGrace+4*time.Second)
	}
}

// endpointDueIn names an endpoint of shop's pool west whose check, at interval and with no
// jitter, has its next window between after and a tenth of the interval later, from now.
func endpointDueIn(t *testing.T, interval, after time.Duration) string {
	t.Helper()
	now := time.Now()
	for i := range 1000 {
		name := fmt.Sprintf("e%d", i)
		if _, at := NextSlot("shop/west/"+name, interval, 0, now.Add(after)); at.Sub(now) < after+interval/10 {
			return name
		}
	}
	t.Fatalf("none of 1000 endpoint names has a window of its %s checks within %s after %s", interval, interval/10, after)
	return ""
}

// lateJS opens the members bucket as lateKV, so that the first record of the worker key names is
// stored late.
type lateJS struct {
	jetstream.JetStream
	kv *lateKV
}

func (js *lateJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.JetStream.KeyValue(ctx, bucket)
	if err != nil || bucket != MembersBucket {
		return kv, err
	}
	js.kv.KeyValue = kv
	return js.kv, nil
}

// lateKV stores the first record put under key only once land is closed, as a store that answers
// late: its answer reaches the caller only if the caller still waits for it. A read of key closes
// land once it has read, and returns once the record is stored: the record lands just after the
// worker looked for it.
type lateKV struct {
	jetstream.KeyValue
	key                   string
	sending, land, landed chan struct{}
	sendOnce, landOnce    sync.Once
}

func (kv *lateKV) open() { kv.landOnce.Do(func() { close(kv.land) }) }

func (kv *lateKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if key != kv.key {
		return kv.KeyValue.Put(ctx, key, value)
	}
	first := false
	kv.sendOnce.Do(func() { first = true })
	if !first {
		return kv.KeyValue.Put(ctx, key, value)
	}
	type answer struct {
		rev uint64
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		defer close(kv.landed)
		<-kv.land
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rev, err := kv.KeyValue.Put(sctx, key, value)
		answers <- answer{rev, err}
	}()
	close(kv.sending)
	select {
	case a := <-answers:
		return a.rev, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (kv *lateKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if key != kv.key {
		return kv.KeyValue.Get(ctx, key)
	}
	e, err := kv.KeyValue.Get(ctx, key)
	select {
	case <-kv.sending:
		kv.open()
		<-kv.landed
	default:
	}
	return e, err
}

// A worker stopped while its first record is being stored leaves no live record behind: it
// waits for the store's answer and deletes the record it stored. It looked for the record on its
// way out instead, and a store that landed after it looked left the record in the bucket, live
// for the region for its TTL from its ActiveFrom, its share of the checks unrun meanwhile.
func TestAWorkerStoppedWhileItsFirstRecordIsBeingStoredLeavesNoLiveRecord(t *testing.T) {
	srv := eventstest.Start(t)
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools: [{name: west, endpoints: [{address: "127.0.0.1:9"}]}]
`)
	kv := &lateKV{key: "local.p1", sending: make(chan struct{}), land: make(chan struct{}), landed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{JS: &lateJS{JetStream: srv.JS, kv: kv}, Config: cfg, Region: "local", Name: "p1",
			Log: zerolog.New(zerolog.NewTestWriter(t)), Heartbeat: 500 * time.Millisecond, MemberTTL: 5 * time.Second})
	}()
	select {
	case <-kv.sending:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker never sent its first record")
	}
	cancel()
	// The store answers 300 ms after the stop, unless the worker looks for the record first.
	late := time.AfterFunc(300*time.Millisecond, kv.open)
	defer late.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the worker stopped while joining returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not stop")
	}
	select {
	case <-kv.landed:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker's first record was never stored")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	bucket, err := srv.JS.KeyValue(rctx, MembersBucket)
	if err != nil {
		t.Fatal(err)
	}
	if r := recordUnder(t, rctx, bucket, "local.p1"); !r.Started.IsZero() && r.ActiveUntil.IsZero() {
		t.Fatalf("the worker stopped while its first record was being stored left it in the bucket, live from %v for %s: want it deleted",
			r.ActiveFrom.Format(time.RFC3339Nano), r.TTL())
	}
}

package prober

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestAProberStoppedWhileStartingReturnsNil stops a prober at moments spread over its start
// (reading its region's members, storing its own record, its first checks): whenever it is
// stopped, stopping is no failure.
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
		err := Run(ctx, Options{JS: srv.JS, Config: cfg, Region: "local", Name: "p1", Log: zerolog.Nop()})
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
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 10s, timeout: 10s, send: "PING\r\n", expect: "+PONG"}
    pools: [{name: west, endpoints: [{name: a, address: "`+addr+`"}]}]
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

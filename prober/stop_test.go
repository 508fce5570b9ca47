package prober

import (
	"context"
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

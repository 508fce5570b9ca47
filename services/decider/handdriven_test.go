package decider

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// w1YAML is one app, shop, whose one endpoint w1 (pool west) one result takes down or brings
// up; extra adds keys to the app, each line indented by four spaces ("    hold_down: 10m\n").
func w1YAML(extra string) string {
	return `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 1, rise: 1, stale_after: 1h}
` + extra + `    pools:
      - name: west
        endpoints: [{name: w1, address: "127.0.0.11:8081"}]
`
}

// w1Config is the configuration w1YAML(extra) gives.
func w1Config(t *testing.T, extra string) *config.Config {
	t.Helper()
	return eventstest.Config(t, w1YAML(extra))
}

// handDriven is a live decider whose loop the test drives itself: it calls heard, onState and
// onTick in the order it means to test.
func handDriven(o Options, js jetstream.JetStream) *decider {
	return &decider{o: o, js: js, ix: newIndex(o.Config), drills: drill.NewView(), regions: map[string]string{}, live: true}
}

// w1Pass is a pass of w1 that prober p1 in region eu observed at at.
func w1Pass(t *testing.T, id string, at time.Time) events.Envelope {
	t.Helper()
	return w1Result(t, id, at, true)
}

// w1Result is a result of w1, a pass when ok, that prober p1 in region eu observed at at.
func w1Result(t *testing.T, id string, at time.Time, ok bool) events.Envelope {
	t.Helper()
	e, err := events.New(events.TypeProbeCompleted, "eu-prober", at, events.ProbeResult{ID: id, At: at,
		App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", Prober: "p1", Check: "http", OK: ok})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

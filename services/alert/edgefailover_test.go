package alert_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/alert"
)

const edgesDoc = `
zones: [{name: demo.test}]
apps:
  - name: www
    fqdn: www.demo.test
    ingress: [edge-west, edge-east]
    primary_edge: edge-west
    pools: [{name: west, region: r, endpoints: [{name: w1, address: "127.0.0.11:80"}]}]
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, endpoints: [{name: w1, address: "127.0.0.12:80"}]}]
edges:
  - {name: edge-west, region: r, hostname: edge-west.demo.test, address: 127.0.0.21, apps: [{app: www, listen: "127.0.0.21:8080"}]}
  - {name: edge-east, region: r, hostname: edge-east.demo.test, address: 127.0.0.22, apps: [{app: www, listen: "127.0.0.22:8080"}]}
alerts:
  - {name: web, on: [failover], apps: [www], webhooks: [{url: "http://127.0.0.1:1/"}]}
  - {name: shop, on: [failover], apps: [shop], webhooks: [{url: "http://127.0.0.1:1/"}]}
`

// TestAnIngressEdgeThatDiesIsAFailoverOfTheAppsItFronted takes down the ingress edge an app's
// CNAME names: DNS moves the CNAME to the sibling edge, which is what a group told about the
// app's failovers is there for. A group about another app is not told.
func TestAnIngressEdgeThatDiesIsAFailoverOfTheAppsItFronted(t *testing.T) {
	cfg := eventstest.Config(t, edgesDoc)
	v := state.NewView()
	tr := events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "3 heartbeats missed"}
	e, err := events.New(events.TypeEdgeDown, "controller-1", time.Now(), tr)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := alert.Classify(cfg, v, events.EdgeStateSubject("edge-west"), 1, e)
	if !ok {
		t.Fatal("the edge's transition is no fact for alerts")
	}
	web, shop := &cfg.Alerts[0], &cfg.Alerts[1]
	if k := alert.Matches(web, f); k != config.AlertFailover {
		t.Fatalf("the group on www's failovers matches the edge's death as %q (kinds %v), want failover", k, f.Kinds)
	}
	if k := alert.Matches(shop, f); k != "" {
		t.Errorf("the group on shop's failovers matches the death of an edge shop is not behind as %q", k)
	}
	want := "failover: edge edge-west up → down; www now answers edge-east.demo.test (3 heartbeats missed)"
	if got := alert.Text(config.AlertFailover, f); got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	body, err := alert.Body(web, web.Webhooks[0], config.AlertFailover, f)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Answers map[string]string `json:"answers"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Answers["www"] != "edge-east.demo.test" || len(p.Answers) != 1 {
		t.Errorf("json delivery %s (%v): want answers {\"www\": \"edge-east.demo.test\"}", body, err)
	}
	// The other edge going down too moves the CNAME to the primary edge: a failover back.
	e, _ = events.New(events.TypeEdgeDown, "controller-1", time.Now(), events.Transition{Edge: "edge-east", From: events.StatusUp, To: events.StatusDown})
	f, _ = alert.Classify(cfg, v, events.EdgeStateSubject("edge-east"), 2, e)
	if got := alert.Text(alert.Matches(web, f), f); !strings.HasSuffix(got, "; www now answers edge-west.demo.test") {
		t.Errorf("edge-east down after edge-west: text %q, want a failover to the primary edge", got)
	}
}

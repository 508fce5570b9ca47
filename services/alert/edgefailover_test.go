package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
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

// manyEdgeApps is a configuration of n apps fronted by edge-west, CNAMEd to it, and by
// edge-east; group all is told every failover, group one only app-0001's.
func manyEdgeApps(t *testing.T, n int, url string) *config.Config {
	t.Helper()
	var apps, west, east strings.Builder
	for i := range n {
		name := fmt.Sprintf("app-%04d", i+1)
		fmt.Fprintf(&apps, "  - {name: %s, fqdn: %s.demo.test, ingress: [edge-west, edge-east], primary_edge: edge-west,\n", name, name)
		fmt.Fprintf(&apps, "     pools: [{name: p, region: r, endpoints: [{name: e1, address: \"127.1.%d.%d:80\"}]}]}\n", i/250, i%250+1)
		fmt.Fprintf(&west, "{app: %s, listen: \"127.0.0.21:%d\"}, ", name, 10000+i)
		fmt.Fprintf(&east, "{app: %s, listen: \"127.0.0.22:%d\"}, ", name, 10000+i)
	}
	return eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
%sedges:
  - {name: edge-west, region: r, hostname: edge-west.demo.test, address: 127.0.0.21, apps: [%s]}
  - {name: edge-east, region: r, hostname: edge-east.demo.test, address: 127.0.0.22, apps: [%s]}
alerts:
  - {name: all, on: [failover], webhooks: [{url: %q}]}
  - {name: one, on: [failover], apps: [app-0001], webhooks: [{url: %q}]}
`, apps.String(), west.String(), east.String(), url, url))
}

// TestTheFailoverOfAnEdgeFrontingThousandsOfAppsIsRecordedAndToldToAGroupOfOneAppAsItsOwn takes
// down an edge that fronts 2,000 apps. Its alert listed every app's new answer, so that its
// attempt outgrew what ALERTS stores for one (64 KiB): the attempt was not recorded, and
// another controller, or this one after a restart, sent it again. A group limited to one app
// was told of the 1,999 others.
func TestTheFailoverOfAnEdgeFrontingThousandsOfAppsIsRecordedAndToldToAGroupOfOneAppAsItsOwn(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := manyEdgeApps(t, 2000, hook.URL)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.EdgeStateSubject("edge-west"), events.TypeEdgeDown,
		events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "3 missed heartbeats"})
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 2 }, "both groups' failovers to be delivered")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return len(stored(t, ns, "all")) == 1 && len(stored(t, ns, "one")) == 1
	}, "ALERTS to record both deliveries; it holds %d of group all's and %d of group one's", len(stored(t, ns, "all")), len(stored(t, ns, "one")))

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, body := range rc.accepted {
		var p alert.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		switch p.Alert {
		case "one":
			want := "failover: edge edge-west up → down; app-0001 now answers edge-east.demo.test (3 missed heartbeats)"
			if p.Text != want || len(p.Answers) != 1 || p.Answers["app-0001"] != "edge-east.demo.test" {
				t.Errorf("group one was told %q with answers of %d apps, want %q with app-0001's alone", p.Text, len(p.Answers), want)
			}
		case "all":
			if len(p.Answers) != 2000 || !strings.Contains(p.Text, "app-0001 now answers edge-east.demo.test") || !strings.Contains(p.Text, "1990 more apps") {
				t.Errorf("group all was told answers of %d apps and %q, want the 2000 in answers, the text naming the first and counting the others",
					len(p.Answers), p.Text[:min(len(p.Text), 300)])
			}
		}
	}
}

// TestADrillsEdgeFailureIsAFailoverToldAsTheDrills kills an edge in a drill (the controller
// marks its transition by its reason): the failover of the apps it fronted paged as an
// outage's, without [drill <id>] nor drill_id.
func TestADrillsEdgeFailureIsAFailoverToldAsTheDrills(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.ReplaceAll(edgesDoc, `"http://127.0.0.1:1/"`, `"`+hook.URL+`"`))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.EdgeStateSubject("edge-west"), events.TypeEdgeDown,
		events.Transition{Edge: "edge-west", From: events.StatusUp, To: events.StatusDown, Reason: "drill lose-edge: simulated failure of edge edge-west"})
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 1 }, "the drill's failover to be delivered")
	transition(t, ns.JS, events.EdgeStateSubject("edge-east"), events.TypeEdgeDown,
		events.Transition{Edge: "edge-east", From: events.StatusUp, To: events.StatusDown, Reason: "3 missed heartbeats"})
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 2 }, "the outage's failover to be delivered")

	rc.mu.Lock()
	defer rc.mu.Unlock()
	var drill, outage alert.Payload
	if json.Unmarshal(rc.accepted[0], &drill) != nil || json.Unmarshal(rc.accepted[1], &outage) != nil {
		t.Fatalf("the receiver accepted %q", rc.accepted)
	}
	if drill.DrillID != "lose-edge" || !strings.HasPrefix(drill.Text, "[drill lose-edge] failover: ") {
		t.Errorf("the drill's failover has drill_id %q and text %q, want lose-edge and [drill lose-edge] before it", drill.DrillID, drill.Text)
	}
	if outage.DrillID != "" || strings.HasPrefix(outage.Text, "[drill") {
		t.Errorf("the outage's failover is told as a drill's: %+v", outage)
	}
}

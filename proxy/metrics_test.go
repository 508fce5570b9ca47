package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEdgeMetricsCountRequestsByStatusAndTargetRetriesAndSecondaryForwards(t *testing.T) {
	w1, w2, e1 := backend(t, "w1"), backend(t, "w2"), backend(t, "e1")
	c := twoEdges(t, []string{w1.Listener.Addr().String(), w2.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	m := c.metrics
	w1.Close()
	for range 4 { // plain GETs take the lean path
		if resp, body := get(t, "http://"+c.west+"/"); resp.StatusCode != 200 {
			t.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
	}
	c.mark(events.PoolStateSubject("shop", "west"), events.TypePoolDown)
	c.mark(events.EndpointStateSubject("shop", "west", "i1"), events.TypeEndpointDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return backendOf(t, "http://"+c.west+"/") == "e1" }, "west's requests to reach east's instance")
	for range 2 { // POSTs take net/http's path, to the secondary
		resp, err := http.Post("http://"+c.west+"/order", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	local := testutil.ToFloat64(m.EdgeRequests.WithLabelValues("edge-west", "shop", "2xx", "local"))
	secondary := testutil.ToFloat64(m.EdgeRequests.WithLabelValues("edge-west", "shop", "2xx", "secondary"))
	if local < 4 || secondary < 3 {
		t.Errorf("edge-west answered %v requests from local instances and %v through the secondary, want at least the 4 GETs and 3 (a GET, 2 POSTs)", local, secondary)
	}
	if r := testutil.ToFloat64(m.EdgeRetries.WithLabelValues("edge-west", "shop")); r < 1 {
		t.Errorf("detour_edge_retries_total{edge=edge-west} = %v, want the GET that found w1 dead retried", r)
	}
	if f := testutil.ToFloat64(m.EdgeSecondaryForwards.WithLabelValues("edge-west", "shop")); f != secondary {
		t.Errorf("detour_edge_secondary_forwards_total = %v, want %v (the requests answered through the secondary)", f, secondary)
	}
	if n := testutil.CollectAndCount(m.EdgeUpstreamDuration); n == 0 {
		t.Error("no upstream latency recorded")
	}
	if e := testutil.ToFloat64(m.EdgeRequests.WithLabelValues("edge-east", "shop", "2xx", "local")); e != secondary {
		t.Errorf("edge-east answered %v forwarded requests from its instance, want %v", e, secondary)
	}
}

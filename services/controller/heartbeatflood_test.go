package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAFloodOfOneEdgesHeartbeatsDoesNotSilenceAnother: an edge faces the Internet, and its
// credentials may publish heartbeats on its own subject, as many and as large (up to NATS's
// max_payload) as they like. Each costs the controller its decoding, 15 ms for 900 KB of
// numbers: 200 of them a second from edge-west kept edge-east's heartbeats waiting behind them,
// or dropped with them, long enough for edge-east, alive and beating every 100 ms, to go down
// twice in 3 s. A flood on one edge's subject must not delay another edge's heartbeats.
func TestAFloodOfOneEdgesHeartbeatsDoesNotSilenceAnother(t *testing.T) {
	ns := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	startController(t, ns, cfg, "controller-1")
	stop := make(chan struct{})
	beat(t, ns, "edge-east", 100*time.Millisecond, stop)
	east := events.EdgeStateSubject("edge-east")
	eventstest.Eventually(t, 5*time.Second, func() bool { return types(history(t, ns, events.StreamState, east)) == "U" }, "edge-east up")

	flood := []byte(`{"type":"detour.edge.heartbeat.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"edge-west","data":{"edge":"edge-west","seq":1,"pad":[` +
		strings.Repeat("0,", 450000) + `0]}}`)
	// edge-west, on a connection of its own; the loop below is the flood's pace, not a wait.
	edge := eventstest.Connect(t, ns.URL)
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(50 * time.Millisecond) {
		for range 10 {
			if err := edge.Publish(events.HeartbeatSubject("edge-west"), flood); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	if got := types(history(t, ns, events.StreamState, east)); got != "U" {
		t.Errorf("edge-east, beating every 100 ms through edge-west's flood, recorded %s, want U alone", got)
	}
}

package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestAFloodOfOneEdgesHeartbeatsDoesNotSilenceAnother: an edge faces the Internet, and its
// credentials may publish heartbeats on its own subject, as many and as large (up to NATS's
// max_payload) as they like. Each costs the controller its decoding, 15 ms for 900 KB of
// numbers: 200 of them a second from edge-west kept edge-east's heartbeats waiting behind them
// on the subscription every edge's heartbeats share, or dropped with them, long enough for
// edge-east, alive and beating every 100 ms, to go down twice in 3 s. A flood on one edge's
// subject must not delay another edge's heartbeats: fed to the subscription's callback behind
// 100 of edge-west's, edge-east's heartbeat is recorded within the time of a few decodings, not
// of 100. The callback is fed here rather than through a server: a server's delivery of the
// flood (180 MB a second, slower still under -race) is not the controller's to speed up, and
// on a fast machine decoding 200 a second kept up anyway.
func TestAFloodOfOneEdgesHeartbeatsDoesNotSilenceAnother(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// The clock stands still: no edge's silence counts, only whether its heartbeat is recorded.
	c := &controller{o: Options{Now: func() time.Time { return start }}, log: zerolog.Nop(),
		live: NewLiveness(cfg, start), beats: newBeats()}
	go c.foldHeartbeats(t.Context())

	flood := []byte(`{"type":"detour.edge.heartbeat.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"edge-west","data":{"edge":"edge-west","seq":1,"pad":[` +
		strings.Repeat("0,", 450000) + `0]}}`)
	west, east := events.HeartbeatSubject("edge-west"), events.HeartbeatSubject("edge-east")
	// What one decoding of the flood costs on this machine, the least of three.
	decoding := time.Duration(1<<63 - 1)
	for range 3 {
		at := time.Now()
		if _, _, err := decodeHeartbeat(west, flood); err != nil {
			t.Fatal(err)
		}
		decoding = min(decoding, time.Since(at))
	}
	recorded := func() bool {
		return slices.ContainsFunc(c.live.Due(start), func(ch Change) bool { return ch.Edge == "edge-east" })
	}
	if recorded() {
		t.Fatal("edge-east's heartbeat recorded before it was sent")
	}

	const flooded = 100
	at := time.Now()
	for range flooded {
		c.onHeartbeat(&nats.Msg{Subject: west, Data: flood})
	}
	c.onHeartbeat(&nats.Msg{Subject: east, Data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-east", Seq: 1, IntervalMS: 100})})
	eventstest.Eventually(t, flooded*decoding+10*time.Second, recorded, "edge-east's heartbeat recorded")
	if took, bound := time.Since(at), 10*decoding; took > bound {
		t.Errorf("edge-east's heartbeat, behind %d of edge-west's, recorded after %v, want within %v: 10 decodings of edge-west's (%v each)", flooded, took, bound, decoding)
	}
}

// TestMalformedHeartbeatsDoNotHideAnEdgesValidOne: only an edge's newest heartbeat waits to be
// decoded, so large malformed messages published on edge-east's subject after its heartbeat
// (its credentials can) took the heartbeat's place, were refused when decoded, and edge-east,
// alive, went down. A heartbeat is small: one waiting behind larger messages of its edge is
// decoded when they are refused.
func TestMalformedHeartbeatsDoNotHideAnEdgesValidOne(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := &controller{o: Options{Now: func() time.Time { return start }}, log: zerolog.Nop(),
		live: NewLiveness(cfg, start), beats: newBeats()}
	east := events.HeartbeatSubject("edge-east")
	malformed := []byte(`{"type":"detour.edge.heartbeat.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"edge-east","data":{"edge":"edge-east","seq":2,"pad":[` +
		strings.Repeat("0,", 450000) + `0]`)
	c.onHeartbeat(&nats.Msg{Subject: east, Data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-east", Seq: 1, IntervalMS: 100})})
	for range 10 {
		c.onHeartbeat(&nats.Msg{Subject: east, Data: malformed})
	}
	c.decodeBeats()
	if c.malformed.Total() != 1 {
		t.Errorf("%d malformed heartbeats decoded, want the newest alone", c.malformed.Total())
	}
	if !slices.ContainsFunc(c.live.Due(start), func(ch Change) bool { return ch.Edge == "edge-east" }) {
		t.Error("edge-east's heartbeat, followed by 10 large malformed messages on its subject, not recorded")
	}
}

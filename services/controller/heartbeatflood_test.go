package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
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
// 100 of edge-west's, edge-east's heartbeat is recorded by the next round of decoding, which
// decodes one of edge-west's, not 100 (counted, not timed, so that a loaded machine cannot
// fail it). The callback is fed here rather than through a server: a server's delivery of the
// flood (180 MB a second, slower still under -race) is not the controller's to speed up, and
// on a fast machine decoding 200 a second kept up anyway.
func TestAFloodOfOneEdgesHeartbeatsDoesNotSilenceAnother(t *testing.T) {
	// The clock stands still: no edge's silence counts, only whether its heartbeat is recorded.
	c, start := standingController(t)
	flood := []byte(`{"type":"detour.edge.heartbeat.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"edge-west","data":{"edge":"edge-west","seq":1,"pad":[` +
		strings.Repeat("0,", 450000) + `0]}}`)
	west, east := events.HeartbeatSubject("edge-west"), events.HeartbeatSubject("edge-east")
	recorded := func() bool {
		return slices.ContainsFunc(c.live.Due(start), func(ch Change) bool { return ch.Edge == "edge-east" })
	}

	const flooded = 100
	for range flooded {
		c.onHeartbeat(&nats.Msg{Subject: west, Data: flood})
	}
	c.onHeartbeat(&nats.Msg{Subject: east, Data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-east", Seq: 1, IntervalMS: 100})})
	if recorded() {
		t.Fatal("edge-east's heartbeat recorded before a decoding")
	}
	// What waits to be decoded is one message of each edge: the round that records edge-east's
	// decodes one of edge-west's, not the 100 it published before.
	round := c.beats.take()
	var subjects []string
	for _, w := range round {
		subjects = append(subjects, w.last.subject)
	}
	if !slices.Equal(subjects, []string{west, east}) {
		t.Fatalf("a round after %d of edge-west's heartbeats and one of edge-east's holds %q, want one of each", flooded, subjects)
	}
	for _, w := range round {
		c.foldHeartbeat(w.last)
	}
	if !recorded() {
		t.Error("edge-east's heartbeat not recorded by the round that decoded it")
	}
}

// TestMalformedHeartbeatsDoNotHideAnEdgesValidOne: only an edge's newest heartbeat waits to be
// decoded, so large malformed messages published on edge-east's subject after its heartbeat
// (its credentials can) took the heartbeat's place, were refused when decoded, and edge-east,
// alive, went down. A heartbeat is small: one waiting behind larger messages of its edge is
// decoded when they are refused.
func TestMalformedHeartbeatsDoNotHideAnEdgesValidOne(t *testing.T) {
	c, start := standingController(t)
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

// standingController is a controller of edgesDoc's edges whose clock stands at start, so that no
// edge's silence counts, for tests that feed its subscriptions' callbacks and drive its decoding
// by hand.
func standingController(t *testing.T) (*controller, time.Time) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(edgesDoc))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := &controller{o: Options{Now: func() time.Time { return start }}, log: zerolog.Nop(),
		live: NewLiveness(cfg, start), beats: newBeats(), checks: newChecks(checkPendingMsgs, checkPendingBytes)}
	c.cfg.Store(cfg)
	return c, start
}

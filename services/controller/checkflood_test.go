package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
)

// TestAFloodOfOneRegionsEdgeChecksDoesNotSilenceAnothers: a prober's credentials may publish
// batches of edge-listener results on their region's subjects, as many and as large as NATS lets
// them. Decoded one after another on the one subscription every region's checks share,
// us-west's flood kept us-east's checks of a live edge waiting behind it, or dropped with it
// (slow consumer), and the edge lost us-east's votes. Fed to the subscription's callback behind
// 100 of us-west's batches, us-east's check of edge-east is counted once at most one of them is
// decoded, not 100. The callback is fed, and the decoding driven one message at a time, rather
// than through a server: what is asserted is the order, which no machine's speed changes.
func TestAFloodOfOneRegionsEdgeChecksDoesNotSilenceAnothers(t *testing.T) {
	c, _ := standingController(t)

	// Each of us-west's batches holds 5,000 results, the last of another region: decoded whole,
	// then refused, and counted as malformed.
	rs := make([]events.ProbeResult, 5000)
	for i := range rs {
		rs[i] = events.ProbeResult{App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-west", Region: "us-west", OK: true}
	}
	rs[len(rs)-1].Region = "us-east"
	flood := heartbeatMsg(t, events.TypeProbeBatchCompleted, events.ProbeBatch{Region: "us-west", Prober: "p1", Results: rs})
	check := heartbeatMsg(t, events.TypeProbeBatchCompleted, events.ProbeBatch{Region: "us-east", Prober: "p2",
		Results: []events.ProbeResult{{App: "shop", Pool: events.EdgeProbePool, Endpoint: "edge-east", Region: "us-east", OK: true}}})
	counted := func() bool {
		c.live.mu.Lock()
		defer c.live.mu.Unlock()
		_, ok := c.live.edges["edge-east"].listeners["shop"].regions["us-east"]
		return ok
	}

	const flooded = 100
	for range flooded {
		c.onEdgeCheck(&nats.Msg{Subject: events.EdgeProbeBatchSubject("us-west", "p1"), Data: flood})
	}
	c.onEdgeCheck(&nats.Msg{Subject: events.EdgeProbeBatchSubject("us-east", "p2"), Data: check})
	for !counted() {
		if !c.foldEdgeCheck() {
			t.Fatal("us-east's check of edge-east never counted")
		}
	}
	if decoded := c.malformed.Total(); decoded > 1 {
		t.Errorf("us-east's check of edge-east counted once %d of us-west's %d batches were decoded, want at most 1", decoded, flooded)
	}
	for c.foldEdgeCheck() {
	}
	if decoded := c.malformed.Total(); decoded != flooded {
		t.Errorf("%d of us-west's batches decoded, want all %d: a region's flood costs that region", decoded, flooded)
	}
}

// TestARegionsChecksOverItsBoundAreDroppedAndNoOtherRegions: the edge-listener results waiting to
// be decoded are bounded per region, so a region whose probers publish faster than they are
// decoded loses its own newest messages, never another region's.
func TestARegionsChecksOverItsBoundAreDroppedAndNoOtherRegions(t *testing.T) {
	q := newChecks(3, 100)
	at := time.Unix(1700000000, 0)
	put := func(region string, n int) bool {
		return q.put(region, arrivedCheck{subject: events.EdgeProbeBatchSubject(region, "p1"), data: make([]byte, n), at: at})
	}
	for i, tt := range []struct {
		region string
		size   int
		kept   bool
	}{
		{"us-west", 40, true}, {"us-west", 40, true}, {"us-west", 40, false}, // over 100 bytes
		{"us-east", 10, true}, {"us-west", 10, true}, {"us-west", 10, false}, // over 3 messages
		{"us-east", 90, true}, {"us-east", 10, false},
	} {
		if got := put(tt.region, tt.size); got != tt.kept {
			t.Errorf("put %d (%d bytes of %s) kept = %v, want %v", i, tt.size, tt.region, got, tt.kept)
		}
	}
	var order []string
	for {
		m, ok := q.next()
		if !ok {
			break
		}
		order = append(order, events.SplitSubject(m.subject, "detour.probe")[0])
	}
	if want := []string{"us-west", "us-east", "us-west", "us-east", "us-west"}; !slices.Equal(order, want) {
		t.Errorf("decoded in turn %v, want %v", order, want)
	}
	if !put("us-west", 100) {
		t.Error("a region's messages decoded leave room for its next ones")
	}
}

package controller

import (
	"slices"
	"testing"

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

// TestEveryRegionsChecksWaitingStayWithinOneBound: each region's messages waiting to be decoded
// were bounded apart (65,536 messages, 256 MiB), so N regions whose probers publish faster than
// they are decoded (N regions' credentials flooding, or N regions' ordinary checks past what the
// one decoder keeps up with) held N × 256 MiB, where the one subscription they replaced held 256
// MiB, and a controller sized for that ran out of memory. The bound is of every region's messages
// together, and past it the region holding the most loses its newest, never a region holding
// less: a region flooding loses its own alone.
func TestEveryRegionsChecksWaitingStayWithinOneBound(t *testing.T) {
	q := newChecks(4, 100)
	put := func(region string, n int) []string {
		return q.put(region, arrived{subject: events.EdgeProbeBatchSubject(region, "p1"), data: make([]byte, n)})
	}
	for i, tt := range []struct {
		region  string
		size    int
		dropped []string
	}{
		{"us-west", 40, nil}, {"us-west", 40, nil},
		{"us-east", 30, []string{"us-west"}}, // 110 bytes: us-west, holding the most, loses its newest
		{"eu-west", 10, nil}, {"eu-west", 10, nil},
		{"ap-south", 5, []string{"eu-west"}}, // 5 messages: eu-west, holding the most, loses its newest
		{"us-west", 40, []string{"us-west"}}, // 5 messages: us-west would hold the most, and loses this one
	} {
		if got := put(tt.region, tt.size); !slices.Equal(got, tt.dropped) {
			t.Errorf("put %d (%d bytes of %s) dropped the newest of %v, want of %v", i, tt.size, tt.region, got, tt.dropped)
		}
	}
	type waiting struct {
		region string
		size   int
	}
	var got []waiting
	for {
		m, ok := q.next()
		if !ok {
			break
		}
		got = append(got, waiting{events.SplitSubject(m.subject, "detour.probe")[0], len(m.data)})
	}
	if want := []waiting{{"us-west", 40}, {"us-east", 30}, {"eu-west", 10}, {"ap-south", 5}}; !slices.Equal(got, want) {
		t.Errorf("decoded in turn %v, want %v", got, want)
	}
	put("us-east", 100)
	if m, ok := q.next(); !ok || len(m.data) != 100 {
		t.Error("the messages decoded leave room for the next ones")
	}
}

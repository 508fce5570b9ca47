package controller

import (
	"context"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestAStoppingControllerLeavesTheChecksWaiting: the checks of edge listeners still waiting when
// the controller stops decide nothing more, yet foldEdgeChecks decoded every one waiting (every
// region's bound of them, and more while they kept arriving) before it looked at its context
// again, holding up the controller's stop. Stopped while it decodes the first of 100 waiting,
// it decodes no other.
func TestAStoppingControllerLeavesTheChecksWaiting(t *testing.T) {
	c, _ := standingController(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c.log = zerolog.New(cancelOnLine(cancel)) // the first malformed message decoded stops it
	for range 100 {
		c.onEdgeCheck(&nats.Msg{Subject: events.EdgeProbeBatchSubject("us-west", "p1"), Data: []byte("{")})
	}
	c.foldEdgeChecks(ctx)
	if decoded := c.malformed.Total(); decoded != 1 {
		t.Errorf("%d of 100 checks waiting decoded once the controller was stopped while decoding the first, want 1", decoded)
	}
}

// cancelOnLine cancels its context at the first line logged to it.
type cancelOnLine context.CancelFunc

func (f cancelOnLine) Write(p []byte) (int, error) {
	f()
	return len(p), nil
}

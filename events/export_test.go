package events

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BridgeNextAfter starts the bridge of a BridgeNext follower of stream's subject filter through
// nc, caught up and at sequence last, as after a loss. startOver does what a follower does when
// it opens the stream and finds it created again (followState.startOver); stop ends the bridge.
func BridgeNextAfter(ctx context.Context, nc *nats.Conn, stream, filter string, last uint64, handle func(Delivery)) (startOver, stop func()) {
	st := &followState{cfg: jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}, mode: BridgeNext, nc: nc,
		streamName: stream, last: last, caught: true, caughtUp: func(uint64) {}}
	b, _ := st.bridge(ctx, BridgeNext, nil, handle)
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.startOver()
	}, b.stop
}

// RefusedPull is the request a follower sends its new consumer on another node until it answers.
var RefusedPull = refusedPull

package controller

import (
	"sync"
	"time"
)

// beats holds, per heartbeat subject, the last heartbeat that arrived and is not decoded yet,
// with when it arrived. The subscription's callback only puts each one there, and one goroutine
// decodes them (foldHeartbeats), one per subject a round in the order they first arrived: an
// edge's credentials may publish heartbeats on its subject as fast and as large as NATS lets
// them, and decoded in the callback, in turn, they kept every other edge's heartbeats waiting
// behind them, or dropped with them when the subscription's queue was full, until those edges
// were taken for silent. A heartbeat overtaken by a later one of its edge before it was decoded
// tells nothing the later one does not: the later one arrived later.
type beats struct {
	mu      sync.Mutex
	pending map[string]arrivedBeat
	order   []string
	wake    chan struct{}
}

// arrivedBeat is a heartbeat as it arrived on subject, not decoded yet.
type arrivedBeat struct {
	subject string
	data    []byte
	at      time.Time
}

func newBeats() *beats {
	return &beats{pending: map[string]arrivedBeat{}, wake: make(chan struct{}, 1)}
}

// put keeps b as its subject's last heartbeat, and wakes the decoder.
func (q *beats) put(b arrivedBeat) {
	q.mu.Lock()
	if _, ok := q.pending[b.subject]; !ok {
		q.order = append(q.order, b.subject)
	}
	q.pending[b.subject] = b
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the heartbeats kept since the last take, one per subject, in the order their
// subjects first arrived.
func (q *beats) take() []arrivedBeat {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]arrivedBeat, 0, len(q.order))
	for _, s := range q.order {
		out = append(out, q.pending[s])
	}
	clear(q.pending)
	q.order = q.order[:0]
	return out
}

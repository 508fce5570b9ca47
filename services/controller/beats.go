package controller

import "sync"

// beats holds, per heartbeat subject, the last heartbeat that arrived and is not decoded yet,
// with when it arrived. The subscription's callback only puts each one there, and one goroutine
// decodes them (foldHeartbeats), one per subject a round in the order they first arrived: an
// edge's credentials may publish heartbeats on its subject as fast and as large as NATS lets
// them, and decoded in the callback, in turn, they kept every other edge's heartbeats waiting
// behind them, or dropped with them when the subscription's queue was full, until those edges
// were taken for silent. A heartbeat overtaken by a later one of its edge before it was decoded
// tells nothing the later one does not: the later one arrived later, unless it cannot be
// decoded. So the last one of at most smallBeat bytes waits too, behind larger ones arrived
// after it, and is decoded when the last is refused: large malformed messages on an edge's
// subject, which cost their decoding, no longer hide its heartbeats, and decoding a subject
// costs at most one large message and one small one a round. Small malformed messages published
// faster than they are decoded still take the heartbeats' place.
type beats struct {
	mu      sync.Mutex
	pending map[string]waitingBeats
	order   []string
	wake    chan struct{}
}

// waitingBeats are one subject's heartbeats waiting: the last that arrived, and the last of at
// most smallBeat bytes when one arrived before it (small.data is nil otherwise).
type waitingBeats struct {
	last, small arrived
}

// smallBeat bounds the heartbeats kept behind a larger one: a heartbeat takes a few hundred
// bytes, but for the apps it names in the edge's first and when they change.
const smallBeat = 4 << 10

func newBeats() *beats {
	return &beats{pending: map[string]waitingBeats{}, wake: make(chan struct{}, 1)}
}

// put keeps b as its subject's last heartbeat, and the last before it as the subject's small
// one when b is larger than smallBeat and that one is not, and wakes the decoder.
func (q *beats) put(b arrived) {
	q.mu.Lock()
	w, ok := q.pending[b.subject]
	if !ok {
		q.order = append(q.order, b.subject)
	}
	switch {
	case len(b.data) <= smallBeat:
		w.small = arrived{}
	case ok && len(w.last.data) <= smallBeat:
		w.small = w.last
	}
	w.last = b
	q.pending[b.subject] = w
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the heartbeats kept since the last take, one subject's each, in the order their
// subjects first arrived.
func (q *beats) take() []waitingBeats {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]waitingBeats, 0, len(q.order))
	for _, s := range q.order {
		out = append(out, q.pending[s])
	}
	clear(q.pending)
	q.order = q.order[:0]
	return out
}

package controller

import (
	"sync"
	"time"
)

// checks holds, per region, the messages of edge-listener results (lone results and batches)
// that arrived and are not decoded yet, each with when it arrived. The subscriptions' callback
// only puts each one there, and one goroutine decodes them (foldEdgeChecks), one message of each
// region in turn: a prober's credentials may publish on their region's subjects as fast and as
// large as NATS lets them, and decoded in the callback, in turn, their batches kept every other
// region's results waiting behind them, or dropped with them when the subscription's queue was
// full, until live edges lost those regions' votes. Each region's waiting messages are bounded
// apart, so a region publishing faster than it is decoded loses its own newest ones alone.
type checks struct {
	maxMsgs, maxBytes int

	mu      sync.Mutex
	pending map[string]*regionChecks // by region; only regions with messages waiting
	order   []string                 // the regions in pending, in the order of their next turn
	wake    chan struct{}
}

// regionChecks are one region's messages waiting, in the order they arrived, and their bytes.
type regionChecks struct {
	msgs  []arrivedCheck
	bytes int
}

// arrivedCheck is a message of edge-listener results as it arrived on subject, not decoded yet.
type arrivedCheck struct {
	subject string
	data    []byte
	at      time.Time
}

// newChecks returns a checks that keeps up to maxMsgs messages and maxBytes bytes of each
// region waiting.
func newChecks(maxMsgs, maxBytes int) *checks {
	return &checks{maxMsgs: maxMsgs, maxBytes: maxBytes, pending: map[string]*regionChecks{}, wake: make(chan struct{}, 1)}
}

// put keeps m, of region, to be decoded after the region's messages waiting, and wakes the
// decoder. It reports false, keeping nothing, when the region has its bound waiting already.
func (q *checks) put(region string, m arrivedCheck) bool {
	q.mu.Lock()
	r := q.pending[region]
	if r == nil {
		r = &regionChecks{}
	}
	if len(r.msgs) >= q.maxMsgs || r.bytes+len(m.data) > q.maxBytes {
		q.mu.Unlock()
		return false
	}
	if len(r.msgs) == 0 {
		q.pending[region] = r
		q.order = append(q.order, region)
	}
	r.msgs = append(r.msgs, m)
	r.bytes += len(m.data)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// next returns the first message waiting of the region whose turn it is, and passes the turn to
// the next region; false when none waits.
func (q *checks) next() (arrivedCheck, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return arrivedCheck{}, false
	}
	region := q.order[0]
	q.order = q.order[1:]
	r := q.pending[region]
	m := r.msgs[0]
	r.msgs[0] = arrivedCheck{} // let the data go
	r.msgs = r.msgs[1:]
	r.bytes -= len(m.data)
	if len(r.msgs) == 0 {
		delete(q.pending, region)
	} else {
		q.order = append(q.order, region)
	}
	return m, true
}

package controller

import (
	"slices"
	"sync"
	"time"
)

// checks holds, per region, the messages of edge-listener results (lone results and batches)
// that arrived and are not decoded yet, each with when it arrived. The subscriptions' callback
// only puts each one there, and one goroutine decodes them (foldEdgeChecks), one message of each
// region in turn: a prober's credentials may publish on their region's subjects as fast and as
// large as NATS lets them, and decoded in the callback, in turn, their batches kept every other
// region's results waiting behind them, or dropped with them when the subscription's queue was
// full, until live edges lost those regions' votes. Every region's waiting messages together are
// bounded, as that queue was, and past the bound the region holding the most of them loses its
// newest: a region publishing faster than it is decoded loses its own alone, and many regions
// doing so hold no more memory than one.
type checks struct {
	maxMsgs, maxBytes int

	mu      sync.Mutex
	pending map[string]*regionChecks // by region; only regions with messages waiting
	order   []string                 // the regions in pending, in the order of their next turn
	// msgs and bytes are what every region's messages waiting add up to.
	msgs, bytes int
	wake        chan struct{}
}

// regionChecks are one region's messages waiting, in the order they arrived, and their bytes.
type regionChecks struct {
	msgs  []arrived
	bytes int
}

// arrived is a message as it arrived on subject, not decoded yet: a heartbeat (beats), or edge
// listener results (checks).
type arrived struct {
	subject string
	data    []byte
	at      time.Time
}

// newChecks returns a checks that keeps up to maxMsgs messages and maxBytes bytes of every
// region together waiting.
func newChecks(maxMsgs, maxBytes int) *checks {
	return &checks{maxMsgs: maxMsgs, maxBytes: maxBytes, pending: map[string]*regionChecks{}, wake: make(chan struct{}, 1)}
}

// put keeps m, of region, to be decoded after the region's messages waiting, and wakes the
// decoder. While m would take every region's messages waiting past a bound, the region holding
// the most of what is over (messages, else bytes) loses its newest: region, whose newest is m,
// which is not kept, when no other region holds more than region would. It returns the regions
// that lost messages, each once.
func (q *checks) put(region string, m arrived) (dropped []string) {
	q.mu.Lock()
	r := q.pending[region]
	if r == nil {
		r = &regionChecks{}
	}
	for q.msgs >= q.maxMsgs || q.bytes+len(m.data) > q.maxBytes {
		byMsgs := q.msgs >= q.maxMsgs
		most, holds := region, len(r.msgs)+1
		if !byMsgs {
			holds = r.bytes + len(m.data)
		}
		for other, o := range q.pending {
			if h := o.holds(byMsgs); h > holds {
				most, holds = other, h
			}
		}
		if most == region {
			q.mu.Unlock()
			return appendOnce(dropped, region)
		}
		q.dropNewest(most)
		dropped = appendOnce(dropped, most)
	}
	if len(r.msgs) == 0 {
		q.pending[region] = r
		q.order = append(q.order, region)
	}
	r.msgs = append(r.msgs, m)
	r.bytes += len(m.data)
	q.msgs, q.bytes = q.msgs+1, q.bytes+len(m.data)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return dropped
}

// holds is how many messages r holds waiting, or with byMsgs false how many bytes.
func (r *regionChecks) holds(byMsgs bool) int {
	if byMsgs {
		return len(r.msgs)
	}
	return r.bytes
}

// dropNewest forgets the last message that arrived of region, which has one waiting.
func (q *checks) dropNewest(region string) {
	r := q.pending[region]
	n := len(r.msgs) - 1
	q.msgs, q.bytes, r.bytes = q.msgs-1, q.bytes-len(r.msgs[n].data), r.bytes-len(r.msgs[n].data)
	r.msgs[n] = arrived{} // let the data go
	r.msgs = r.msgs[:n]
	if n == 0 {
		delete(q.pending, region)
		q.order = slices.DeleteFunc(q.order, func(o string) bool { return o == region })
	}
}

// appendOnce returns regions with region at its end, unless regions holds it already.
func appendOnce(regions []string, region string) []string {
	if slices.Contains(regions, region) {
		return regions
	}
	return append(regions, region)
}

// next returns the first message waiting of the region whose turn it is, and passes the turn to
// the next region; false when none waits.
func (q *checks) next() (arrived, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return arrived{}, false
	}
	region := q.order[0]
	q.order = q.order[1:]
	r := q.pending[region]
	m := r.msgs[0]
	r.msgs[0] = arrived{} // let the data go
	r.msgs = r.msgs[1:]
	r.bytes -= len(m.data)
	q.msgs, q.bytes = q.msgs-1, q.bytes-len(m.data)
	if len(r.msgs) == 0 {
		delete(q.pending, region)
	} else {
		q.order = append(q.order, region)
	}
	return m, true
}

package decider

import (
	"context"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/decide"
	"github.com/nats-io/nats.go/jetstream"
)

// maxInFlight bounds the appends a flush has outstanding at once (below the client's limit of
// pending asynchronous publishes).
const maxInFlight = 1000

// queued is a decision waiting for the next flush.
type queued struct {
	s   *endpointSlot
	dec decide.Decision
}

// queue keeps dec for the next flush. A second decision on an endpoint already queued flushes
// the first, so that every transition is appended, in order.
func (d *decider) queue(ctx context.Context, s *endpointSlot, dec decide.Decision) {
	if d.queuedSlots[s] {
		d.flush(ctx)
	}
	if d.queuedSlots == nil {
		d.queuedSlots = map[*endpointSlot]bool{}
	}
	d.queuedSlots[s] = true
	d.queued = append(d.queued, queued{s, dec})
}

// appendJob is one append a flush sends: ev to subject after lastSeq, and its outcome.
type appendJob struct {
	subject string
	ev      events.Envelope
	lastSeq uint64
	ack     *jetstream.PubAck
	err     error
}

// flush appends the queued decisions together: the endpoints' transitions first, pipelined,
// then the transitions of the pools whose availability they changed, pipelined. Each append
// still expects its subject's last sequence, so two replicas never both append one change; an
// append that loses that race is re-read and decided again alone, as commit does. A thousand
// endpoints failing together so cost two round trips to JetStream rather than two thousand.
func (d *decider) flush(ctx context.Context) {
	if len(d.queued) == 0 {
		return
	}
	q := d.queued
	d.queued, d.queuedSlots = nil, nil

	var pools []*poolSlot
	seen := map[*poolSlot]bool{}
	addPool := func(p *poolSlot) {
		if !seen[p] {
			seen[p] = true
			pools = append(pools, p)
		}
	}
	jobs := make([]appendJob, 0, len(q))
	sent := make([]queued, 0, len(q))
	for _, x := range q {
		if !due(x.s, x.dec) {
			addPool(x.s.pool)
			continue
		}
		ev, ok := d.endpointEvent(x.s, x.dec)
		if !ok {
			continue
		}
		jobs = append(jobs, appendJob{subject: x.s.subject, ev: ev, lastSeq: x.s.seq})
		sent = append(sent, x)
	}
	d.appendAll(ctx, jobs)
	for i, j := range jobs {
		x := sent[i]
		if j.err == nil {
			d.endpointRecorded(x.s, x.dec, j.ev, j.ack)
			addPool(x.s.pool)
			continue
		}
		if d.conflicted(ctx, x.s, x.dec, j.err) {
			d.commit(ctx, x.s, x.dec)
		}
	}

	jobs = jobs[:0]
	var changed []*poolSlot
	var ts []events.Transition
	for _, p := range pools {
		if ev, t, ok := d.poolEvent(p, false); ok {
			jobs = append(jobs, appendJob{subject: p.subject, ev: ev, lastSeq: p.seq})
			changed, ts = append(changed, p), append(ts, t)
		}
	}
	d.appendAll(ctx, jobs)
	for i, j := range jobs {
		p := changed[i]
		if j.err == nil {
			d.poolRecorded(p, ts[i], j.ev, j.ack)
			continue
		}
		if d.poolConflicted(ctx, p, j.err) {
			d.checkPool(ctx, p)
		}
	}
}

// appendAll appends the jobs in order, pipelined: up to maxInFlight are sent before the first
// acknowledgement is awaited. One connection stores them in the order sent, so the stream (and
// every id derived from its sequences) is the same whatever the timing.
func (d *decider) appendAll(ctx context.Context, jobs []appendJob) {
	for start := 0; start < len(jobs); start += maxInFlight {
		d.appendWindow(ctx, jobs[start:min(start+maxInFlight, len(jobs))])
	}
}

// appendWindow appends up to maxInFlight jobs, awaiting their acknowledgements for at most
// appendTimeout.
func (d *decider) appendWindow(ctx context.Context, window []appendJob) {
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(window))
	for i := range window {
		j := &window[i]
		futures[i], j.err = events.AppendAsync(d.js, j.subject, j.ev, j.lastSeq)
	}
	for i, f := range futures {
		if f != nil {
			j := &window[i]
			j.ack, j.err = events.AppendResult(ctx, f, j.ev, j.lastSeq)
		}
	}
}

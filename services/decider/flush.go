package decider

import (
	"context"
	"errors"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/decide"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// maxInFlight bounds the appends outstanding at once (below the client's limit of pending
// asynchronous publishes).
const maxInFlight = 1000

// queued is a decision waiting for the next flush.
type queued struct {
	s   *endpointSlot
	dec decide.Decision
}

// queue keeps dec for the next flush. A second decision on an endpoint already queued flushes
// the first, so that every transition is appended, in order; while the appends are stalled
// (see flush), both stay queued, in that order.
func (d *decider) queue(ctx context.Context, s *endpointSlot, dec decide.Decision) {
	if d.queuedSlots[s] {
		d.flush(ctx)
	}
	d.keep(s, dec)
}

// keep puts dec at the end of the queue.
func (d *decider) keep(s *endpointSlot, dec decide.Decision) {
	if d.queuedSlots == nil {
		d.queuedSlots = map[*endpointSlot]bool{}
	}
	d.queuedSlots[s] = true
	d.queued = append(d.queued, queued{s, dec})
}

// sent is an append on its way to STATE: an endpoint's transition (s, dec) or a pool's (p, t).
// Until it is acknowledged its slot shows ev as recorded, so that the decisions of the messages
// folded meanwhile see what they would see once it is stored; the slot's sequence stays the last
// one STATE acknowledged, and prev keeps what the slot showed before.
type sent struct {
	s   *endpointSlot
	dec decide.Decision
	p   *poolSlot
	t   events.Transition

	ev      events.Envelope
	lastSeq uint64
	f       jetstream.PubAckFuture
	// err is set when the append could not be sent, or once its acknowledgement says it failed.
	err error
	// at is when it was sent, on this host's clock.
	at   time.Time
	prev shown
	// key orders the appends in flight after every sequence STATE acknowledged, in the order
	// sent (which is the order STATE stores them in): see endpointSlot.order.
	key uint64
	// messages are the PROBES messages whose appends end with this one: counted in
	// Stats.Messages once it is acknowledged.
	messages uint64
}

// shown is what a slot shows as recorded on its subject: its status, the event's id, when the
// change happened, the event's time (see endpointSlot.since and dated), and whether a drill's
// failure made it (endpointSlot.drilled, poolSlot.drilled).
type shown struct {
	status      events.Status
	eventID     string
	since       time.Time
	dated       time.Time
	drilled     string
	poolDrilled bool
}

// subject is the STATE subject the append goes to.
func (j *sent) subject() string {
	if j.s != nil {
		return j.s.subject
	}
	return j.p.subject
}

// pool is the pool whose availability the append changes or may change.
func (j *sent) pool() *poolSlot {
	if j.s != nil {
		return j.s.pool
	}
	return j.p
}

// flush sends the queued decisions' appends: the endpoints' transitions first, then the
// transitions of the pools whose availability they change, in that order, without waiting for
// their acknowledgements. Each append still expects its subject's last sequence, so two replicas
// never both append one change; a subject with an append in flight waits for its
// acknowledgement (landThrough) before the next is built, as its expected sequence and its
// event id follow from the sequence STATE gives the first. An endpoint's transition also waits
// for its pool's in flight, which was built on the endpoints' statuses as they are: were the
// pool's refused (another replica appended to the pool first), it is decided again on those
// statuses, not on a later one of the endpoint that makes it moot (STATE would then show the
// pool up while its endpoints are down, or the reverse, until the endpoint changes back). The
// acknowledgements come back to the loop in the order sent (landed), and the appends of each
// decision round reach STATE in the order a flush that waited for every acknowledgement would
// have appended them, whatever the timing: the stream (and every id derived from its sequences)
// stays the same, while a storm of thousands of transitions costs no round trip to JetStream per
// PROBES message.
//
// While the appends are stalled (appendsStalled: one failed for another reason than a conflict,
// and none sent after it landed), the decisions still queued wait there, in order, until an
// append lands or the next tick: with STATE's leader no longer answering, every batch of
// maxInFlight appends waited appendTimeout for the oldest's acknowledgement and appendTimeout
// more for the others' (settle), and 10,000 endpoints failing at once held the loop for 10 s in
// one flush, no PROBES read and no tick, then as long again in the tick that tried them again;
// now a flush, and a tick, wait for one batch.
func (d *decider) flush(ctx context.Context) {
	if len(d.queued) == 0 || d.appendsStalled {
		d.countKept()
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
	for i, x := range q {
		if d.appendsStalled {
			for _, y := range q[i:] {
				d.keep(y.s, y.dec)
			}
			break
		}
		if x.s.next != nil {
			d.landThrough(ctx, x.s.next)
		}
		if p := x.s.pool; p.next != nil {
			d.landThrough(ctx, p.next)
		}
		if !d.readUnanswered(ctx, x.s, x.dec) {
			continue
		}
		x.s.dropped = droppedAsOlder(x.s, x.dec)
		if !due(x.s, x.dec) {
			d.watchEndpoint(x.s)
			addPool(x.s.pool)
			continue
		}
		ev, ok := d.endpointEvent(x.s, x.dec)
		if !ok {
			continue
		}
		d.send(ctx, &sent{s: x.s, dec: x.dec, ev: ev, lastSeq: x.s.seq})
		addPool(x.s.pool)
	}
	d.sendPools(ctx, pools)
	d.countKept()
}

// sendPools sends the transitions of the pools whose availability changed since STATE last
// recorded them, as flush does after their endpoints'. Once the appends are stalled, the pools
// still to send wait for the next tick (retryLater), as the endpoints' transitions still queued
// do: sent on, they filled the pipe again, and each time the loop waited appendTimeout for the
// oldest's acknowledgement and appendTimeout more for the others'.
func (d *decider) sendPools(ctx context.Context, pools []*poolSlot) {
	for i, p := range pools {
		if d.appendsStalled {
			for _, p := range pools[i:] {
				d.retryLater(p)
			}
			return
		}
		if p.next != nil {
			d.landThrough(ctx, p.next)
		}
		if p.drilled && p.restates(p.verdict()) {
			// A re-statement pages as an outage: it is built on the endpoints' transitions
			// STATE holds, not on one in flight that another replica's may refuse (its up
			// stored first: the pool re-stated down while its endpoint is up).
			for _, s := range p.endpoints {
				if s.next != nil {
					d.landThrough(ctx, s.next)
				}
			}
		}
		if !d.readPoolUnanswered(ctx, p) {
			continue
		}
		if ev, t, ok := d.poolEvent(p, false); ok {
			d.send(ctx, &sent{p: p, t: t, ev: ev, lastSeq: p.seq})
		}
	}
}

// retryLater keeps p's transition for the next tick, which sends it again with the others
// kept, without waiting for each acknowledgement in turn.
func (d *decider) retryLater(p *poolSlot) {
	if !p.retry {
		p.retry = true
		d.retrying = append(d.retrying, p)
	}
}

// send starts the append j and shows its event on its slot until it lands.
func (d *decider) send(ctx context.Context, j *sent) {
	for len(d.pipe) >= maxInFlight {
		d.landThrough(ctx, d.pipe[0])
	}
	j.f, j.err = events.AppendAsync(d.js, j.subject(), j.ev, j.lastSeq)
	j.at = time.Now()
	d.sentKeys++
	j.key = d.sentKeys
	status, _ := events.TransitionStatus(j.ev.Type)
	if s := j.s; s != nil {
		j.prev = shown{status: s.status, eventID: s.eventID, since: s.since, dated: s.dated, drilled: s.drilled}
		s.sent.Add(j.lastSeq, j.ev.ID, endpointSent(s, j.dec))
		s.status, s.eventID, s.since, s.dated, s.next = status, j.ev.ID, j.dec.At, j.ev.Time, j
		s.drilled = drill.ID(j.dec.Drill)
	} else {
		p := j.p
		j.prev = shown{status: p.status, since: p.since, poolDrilled: p.drilled}
		p.sent.Add(j.lastSeq, j.ev.ID, poolSent(j.t))
		p.status, p.since, p.next = status, j.ev.Time, j
		p.drilled = status == events.StatusDown && j.t.Drill != ""
	}
	j.pool().inFlight++
	d.pipe = append(d.pipe, j)
	if j.err != nil {
		d.settle(ctx) // not sent: handled now, in order
	}
}

// countMessage counts a PROBES message in Stats.Messages once the appends its decisions made
// have landed.
func (d *decider) countMessage() {
	if len(d.queued) > 0 {
		d.keptMessages++ // its decisions are kept while the appends are stalled (see flush)
		return
	}
	if len(d.pipe) == 0 {
		d.o.Stats.Messages.Add(1)
		return
	}
	d.pipe[len(d.pipe)-1].messages++
}

// countKept counts the messages whose decisions flush kept, once none is kept any more: with
// the appends sent since, as countMessage counts a message.
func (d *decider) countKept() {
	if d.keptMessages == 0 || len(d.queued) > 0 {
		return
	}
	if len(d.pipe) == 0 {
		d.o.Stats.Messages.Add(d.keptMessages)
	} else {
		d.pipe[len(d.pipe)-1].messages += d.keptMessages
	}
	d.keptMessages = 0
}

// front returns the channels on which the oldest append in flight is acknowledged or fails; nil
// channels when none is in flight.
func (d *decider) front() (<-chan *jetstream.PubAck, <-chan error) {
	if len(d.pipe) == 0 || d.pipe[0].f == nil {
		return nil, nil
	}
	return d.pipe[0].f.Ok(), d.pipe[0].f.Err()
}

// acked handles the acknowledgement of the oldest append in flight, or its failure err (from its
// future). A failure settles every append in flight, as those sent after it may have been built
// on it.
func (d *decider) acked(ctx context.Context, ack *jetstream.PubAck, err error) {
	j := d.pipe[0]
	if err != nil {
		j.err = events.AppendError(j.subject(), j.ev, j.lastSeq, err)
	} else {
		j.err = d.preempted(ctx, j.subject(), j.ev, ack)
	}
	if j.err != nil {
		d.settle(ctx)
		return
	}
	d.pop()
	d.landed(ctx, j, ack)
}

// landThrough waits for the appends in flight up to j, for at most appendTimeout each, and
// handles them in the order sent; a failure settles every append in flight.
func (d *decider) landThrough(ctx context.Context, j *sent) {
	for len(d.pipe) > 0 {
		front := d.pipe[0]
		if front.err != nil {
			d.settle(ctx)
			return
		}
		wctx, cancel := context.WithTimeout(ctx, appendTimeout)
		ack, err := events.AppendResult(wctx, front.f, front.ev, front.lastSeq)
		cancel()
		if err == nil {
			err = d.preempted(ctx, front.subject(), front.ev, ack)
		}
		if err != nil {
			front.err = err
			d.settle(ctx)
			return
		}
		d.pop()
		d.landed(ctx, front, ack)
		if front == j {
			return
		}
	}
}

// overdue reports whether the appends in flight stopped landing: the oldest has waited for its
// acknowledgement longer than appendTimeout, and none landed for as long. Acknowledgements that
// come late but keep coming (JetStream and this process short of CPU in a storm of thousands of
// transitions) are waited for: settling then would count the appends still on their way as
// failed and send them again, adding load where there is too much already, while every one of
// them is stored.
func (d *decider) overdue() bool {
	return len(d.pipe) > 0 && time.Since(d.pipe[0].at) > appendTimeout && time.Since(d.landedAt) > appendTimeout
}

// landReady lands the appends in flight whose acknowledgements have come, without waiting for
// the others.
func (d *decider) landReady(ctx context.Context) {
	for len(d.pipe) > 0 && d.pipe[0].f != nil {
		select {
		case ack := <-d.pipe[0].f.Ok():
			d.acked(ctx, ack, nil)
		case err := <-d.pipe[0].f.Err():
			d.acked(ctx, nil, err)
			return
		default:
			return
		}
	}
}

// pop takes the oldest append off the pipe.
func (d *decider) pop() {
	d.pipe[0] = nil
	d.pipe = d.pipe[1:]
	if len(d.pipe) == 0 {
		d.pipe = nil // let the backing array go after a burst
	}
}

// settle waits for every append in flight, for at most appendTimeout, and handles each outcome
// in the order sent. When one failed, the appends sent after it were built on it: once every
// outcome is known, the failures are decided again as a flush waiting for each acknowledgement
// would have (re-read after a conflict, retried on the next tick otherwise), and the pools they
// touched are checked again, so that a pool transition stored on a failed endpoint's append is
// followed by the one its endpoints' recorded statuses imply.
func (d *decider) settle(ctx context.Context) { d.settleWithin(ctx, appendTimeout) }

// settleWithin is settle waiting at most wait for the acknowledgements that have not come.
func (d *decider) settleWithin(ctx context.Context, wait time.Duration) {
	if len(d.pipe) == 0 {
		return
	}
	pipe := d.pipe
	d.pipe = nil
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var failed []*sent
	var touched []*poolSlot
	for _, j := range pipe {
		var ack *jetstream.PubAck
		if j.err == nil {
			ack, j.err = events.AppendResult(wctx, j.f, j.ev, j.lastSeq)
			if j.err == nil {
				j.err = d.preempted(ctx, j.subject(), j.ev, ack)
			}
		}
		if j.err == nil {
			d.landed(ctx, j, ack)
		} else {
			d.appendsStalled = !errors.Is(j.err, events.ErrConflict)
			d.unsent(j)
			if j.s != nil {
				d.endpointStored(j.s, j.ev.ID, j.s.sent.Failed(j.ev.ID, j.err))
			} else {
				d.poolStored(j.p, j.ev.ID, j.p.sent.Failed(j.ev.ID, j.err))
			}
			failed = append(failed, j)
		}
		if len(failed) > 0 {
			touched = append(touched, j.pool())
		}
	}
	for _, j := range failed {
		if j.s != nil {
			if d.conflicted(ctx, j.s, j.dec, j.ev, j.err) {
				d.commit(ctx, j.s, j.dec)
			}
		} else if d.poolConflicted(ctx, j.p, j.err) {
			d.checkPool(ctx, j.p)
		}
	}
	for _, p := range touched {
		if d.failing {
			d.retryLater(p)
			continue
		}
		d.checkPool(ctx, p)
	}
}

// landed records the acknowledged append j.
func (d *decider) landed(ctx context.Context, j *sent, ack *jetstream.PubAck) {
	d.landedAt, d.unanswered, d.appendsStalled = time.Now(), false, false
	d.o.Stats.Messages.Add(j.messages)
	p := j.pool()
	p.inFlight--
	if s := j.s; s != nil {
		s.next = nil
		d.endpointRecorded(s, j.ev, j.dec.At, ack)
		// Stored after the pool's last event: a pool transition it was sent without (see
		// superseded) is decided again.
		p.recheck = p.recheck || p.next == nil && s.seq > p.seq
	} else {
		j.p.next = nil
		d.poolRecorded(j.p, j.ev, ack)
	}
	if p.recheck && p.inFlight == 0 {
		p.recheck = false
		d.checkPool(ctx, p)
	}
}

// unsent takes the failed append j off its slot: the slot shows again what STATE recorded,
// unless STATE delivered a newer event on the subject meanwhile.
func (d *decider) unsent(j *sent) {
	d.o.Stats.Messages.Add(j.messages)
	j.pool().inFlight--
	if s := j.s; s != nil {
		s.next = nil
		if s.seq == j.lastSeq {
			s.status, s.eventID, s.since, s.dated, s.drilled = j.prev.status, j.prev.eventID, j.prev.since, j.prev.dated, j.prev.drilled
		}
		return
	}
	j.p.next = nil
	if j.p.seq == j.lastSeq {
		j.p.status, j.p.since, j.p.drilled = j.prev.status, j.prev.since, j.prev.poolDrilled
	}
}

// recorded is what STATE recorded on the subject of a slot that may have an append in flight
// (next): the status shown before it.
func recorded(status events.Status, seq uint64, next *sent) events.Status {
	if next != nil && seq == next.lastSeq {
		return next.prev.status
	}
	return status
}

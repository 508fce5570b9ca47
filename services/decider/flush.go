package decider

import (
	"context"
	"errors"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/decide"
)

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

// flush records the queued decisions together: the endpoints' transitions as one batch (several
// back to back when they outgrow events.MaxBatchBytes), then the transitions of the pools whose
// availability they changed, as another. Each batch expects its slot's last sequence, so two
// replicas never both record one change: when another replica appended first, this one reads
// the batches it missed and decides again what is still due. A thousand endpoints failing
// together so cost a few appends rather than two thousand.
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
	for attempt := 0; len(q) > 0; attempt++ {
		items := make([]events.Item, 0, len(q))
		evs := make([]events.Envelope, 0, len(q))
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
			items, evs, sent = append(items, d.item(x.s.subject, ev)), append(evs, ev), append(sent, x)
		}
		if len(items) == 0 {
			break
		}
		if attempt == maxAttempts {
			d.laterAll(ctx, sent, errors.New("too many conflicting writers"))
			break
		}
		got, err := d.appendBatches(ctx, items)
		for i, a := range got {
			d.endpointRecorded(sent[i].s, sent[i].dec, evs[i], a.seq, a.dup)
			addPool(sent[i].s.pool)
		}
		if err == nil {
			break
		}
		q = sent[len(got):]
		if !d.conflicted(ctx, err) {
			d.laterAll(ctx, q, err)
			break
		}
	}
	d.appendPools(ctx, pools, false)
}

// appendPools records the transitions of the pools whose endpoints' recorded statuses changed
// their availability, as one batch; with reassert, a pool event newer than its endpoints' does
// not stop it (see poolEvent). After a conflict it reads the batches it missed and decides again.
func (d *decider) appendPools(ctx context.Context, pools []*poolSlot, reassert bool) {
	for attempt := 0; len(pools) > 0; attempt++ {
		items := make([]events.Item, 0, len(pools))
		evs := make([]events.Envelope, 0, len(pools))
		ts := make([]events.Transition, 0, len(pools))
		changed := make([]*poolSlot, 0, len(pools))
		for _, p := range pools {
			if ev, t, ok := d.poolEvent(p, reassert); ok {
				items, evs, ts, changed = append(items, d.item(p.subject, ev)), append(evs, ev), append(ts, t), append(changed, p)
			}
		}
		if len(items) == 0 {
			return
		}
		if attempt == maxAttempts {
			d.poolsLater(ctx, changed, errors.New("too many conflicting writers"))
			return
		}
		got, err := d.appendBatches(ctx, items)
		for i, a := range got {
			d.poolRecorded(changed[i], ts[i], evs[i], a.seq, a.dup)
		}
		if err == nil {
			return
		}
		pools = changed[len(got):]
		if !d.conflicted(ctx, err) {
			d.poolsLater(ctx, pools, err)
			return
		}
	}
}

// item is ev, to be recorded on subject, as a batch item: its source is the batch's.
func (d *decider) item(subject string, ev events.Envelope) events.Item {
	it := events.ItemOf(subject, 0, ev)
	if it.Source == d.o.Name {
		it.Source = ""
	}
	return it
}

// conflicted handles an append that failed with err, and reports whether to decide again: after
// a conflict, once the batches another replica appended meanwhile have been read.
func (d *decider) conflicted(ctx context.Context, err error) bool {
	if !errors.Is(err, events.ErrConflict) {
		return false
	}
	d.o.Stats.Conflicts.Add(1)
	if err := d.catchUp(ctx); err != nil {
		d.failing = true
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("batches not read after a conflict, retrying")
		}
		return false
	}
	return true
}

// laterAll keeps decisions whose append failed for the next tick, and logs the failure once.
func (d *decider) laterAll(ctx context.Context, q []queued, err error) {
	for _, x := range q {
		dec := x.dec
		x.s.pending = &dec
		d.o.Stats.Failed.Add(1)
	}
	d.failing = true
	if ctx.Err() == nil && len(q) > 0 {
		d.log.Error().Err(err).Int("transitions", len(q)).Str("subject", q[0].s.subject).Msg("append endpoint transitions failed, retrying")
	}
}

// poolsLater keeps pool transitions whose append failed for the next tick, and logs once.
func (d *decider) poolsLater(ctx context.Context, ps []*poolSlot, err error) {
	for _, p := range ps {
		p.retry = true
		d.o.Stats.Failed.Add(1)
	}
	d.failing = true
	if ctx.Err() == nil && len(ps) > 0 {
		d.log.Error().Err(err).Int("transitions", len(ps)).Str("subject", ps[0].subject).Msg("append pool transitions failed, retrying")
	}
}

package decider

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// restateTimeout bounds the storing of one round of restatements.
const restateTimeout = 10 * time.Second

// restateAhead is how many of the batches next to leave their slots have their transitions
// restated ahead, on a tick when no PROBES message waits, so that a storm's appends (a region of
// 10,000 endpoints takes about 45 batches) do not wait for restatements of their own; the
// newest batches' transitions, which a flapping endpoint soon replaces, wait.
const restateAhead = events.BatchSlots * 3 / 4

// batches is what the decider knows of STATE's batches.
type batches struct {
	// known is set once a batch has been seen; last is the index of the newest, stored at
	// lastSeq.
	known   bool
	last    uint64
	lastSeq uint64
	// slots is the last sequence of each batch slot.
	slots [events.BatchSlots]uint64
}

// next is the index of the next batch.
func (b *batches) next() uint64 {
	if !b.known {
		return 0
	}
	return b.last + 1
}

// leavingSoon returns the sequences of the restateAhead batches that the next batches will
// replace in their slots.
func (b *batches) leavingSoon() map[uint64]bool {
	out := map[uint64]bool{}
	for i := range uint64(restateAhead) {
		if seq := b.slots[(b.next()+i)%events.BatchSlots]; seq != 0 {
			out[seq] = true
		}
	}
	return out
}

// saw notes batch index, stored at seq.
func (b *batches) saw(index, seq uint64) {
	if slot := index % events.BatchSlots; seq > b.slots[slot] {
		b.slots[slot] = seq
	}
	if !b.known || index > b.last {
		b.known, b.last, b.lastSeq = true, index, seq
	}
}

// appended is the outcome of one item's append: the sequence it was recorded at, and whether
// another replica had stored the same batch first.
type appended struct {
	seq uint64
	dup bool
}

// appendBatches records items as batches appended one after another, each within
// events.MaxBatchBytes. It returns the outcome of the items recorded, from the first, and the
// error that stopped it (wrapping events.ErrConflict when another replica appended first).
func (d *decider) appendBatches(ctx context.Context, items []events.Item) ([]appended, error) {
	out := make([]appended, 0, len(items))
	for start := 0; start < len(items); {
		end := start + 1
		for size := itemSize(items[start]); end < len(items) && size+itemSize(items[end]) <= events.MaxBatchBytes; end++ {
			size += itemSize(items[end])
		}
		seq, dup, err := d.appendBatch(ctx, items[start:end])
		if err != nil {
			return out, err
		}
		for range items[start:end] {
			out = append(out, appended{seq, dup})
		}
		start = end
	}
	return out, nil
}

// itemSize is about how many bytes it takes in a batch.
func itemSize(it events.Item) int {
	return len(it.Subject) + len(it.Type) + len(it.ID) + len(it.Source) + len(it.Cause) + len(it.Data) + 96
}

// appendBatch appends items as the next batch, on its slot, expecting the slot's last sequence.
// The transitions of the batch about to be replaced in the slot that are still their subjects'
// latest are restated first.
func (d *decider) appendBatch(ctx context.Context, items []events.Item) (uint64, bool, error) {
	b := &d.batches
	index := b.next()
	if replaced := b.slots[index%events.BatchSlots]; replaced != 0 {
		if err := d.restate(ctx, map[uint64]bool{replaced: true}); err != nil {
			return 0, false, err
		}
	}
	ids := make([]string, len(items))
	var at time.Time
	for i, it := range items {
		ids[i] = it.ID
		if it.Time.After(at) {
			at = it.Time
		}
	}
	// Replicas recording the same transitions as the same batch derive the same id: JetStream
	// keeps one and acknowledges the other as a duplicate.
	ev, err := events.Derived(events.TypeStateBatch, d.o.Name, items[0].ID, strconv.FormatUint(index, 10)+"|"+strings.Join(ids, ","),
		at, events.StateBatch{Index: index, Items: items})
	if err != nil {
		return 0, false, err
	}
	actx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	ack, err := events.Append(actx, d.js, events.BatchSubject(index), ev, b.slots[index%events.BatchSlots])
	if err != nil {
		return 0, false, err
	}
	b.saw(index, ack.Sequence)
	d.o.Stats.Batches.Add(1)
	return ack.Sequence, ack.Duplicate, nil
}

// catchUp reads the batches stored after the newest this replica knows of, and folds them.
func (d *decider) catchUp(ctx context.Context) error {
	from := d.batches.lastSeq + 1
	for {
		gctx, cancel := context.WithTimeout(ctx, appendTimeout)
		m, err := d.state.GetMsg(gctx, from, jetstream.WithGetMsgSubject(events.SubjectBatches))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read batches from seq %d: %w", from, err)
		}
		dl := delivery{subject: m.Subject, data: m.Data, seq: m.Sequence, stamp: m.Time, pending: 1}
		decodeState(&dl)
		d.onState(ctx, dl)
		from = m.Sequence + 1
	}
}

// noteBatch notes the batch a STATE delivery carries, or the transition it restates (this
// replica's or another's), which no replica need restate again.
func (d *decider) noteBatch(m delivery) {
	if m.batch != nil {
		d.batches.saw(m.batch.Index, m.seq)
		return
	}
	for _, f := range m.facts {
		if f.Restated && m.subject == events.RestatementSubject(f.Subject) && f.Seq > d.restated[f.Subject] {
			d.markRestated(f.Subject, f.Seq)
		}
	}
}

// markRestated notes that the transition recorded at seq on subject is restated.
func (d *decider) markRestated(subject string, seq uint64) {
	if d.restated == nil {
		d.restated = map[string]uint64{}
	}
	d.restated[subject] = seq
}

// restate stores, before the batches stored at seqs leave their slots, each transition of them
// that is still its endpoint's or pool's latest and not restated yet, as a restatement of that one
// item on the subject's events.RestatementSubject (which no batch replaces), so that the last
// message of some STATE subject keeps holding it. All are stored before it returns. Replicas
// restating the same transition derive the same id, and JetStream keeps one.
func (d *decider) restate(ctx context.Context, seqs map[uint64]bool) error {
	if len(seqs) == 0 {
		return nil
	}
	var items []events.Item
	add := func(subject string, at uint64, env events.Envelope) {
		if seqs[at] && d.restated[subject] != at {
			items = append(items, events.ItemOf(subject, at, env))
		}
	}
	for _, s := range d.ix.endpoints {
		add(s.subject, s.seq, s.env)
	}
	for _, a := range d.ix.apps {
		for _, p := range a.pools {
			add(p.subject, p.seq, p.env)
		}
	}
	if len(items) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, restateTimeout)
	defer cancel()
	evs := make([]events.Envelope, len(items))
	futures := make([]jetstream.PubAckFuture, len(items))
	var err error
	for i, it := range items {
		evs[i], err = events.Derived(events.TypeStateCheckpoint, d.o.Name, it.ID, "restated|"+it.Subject+"|"+strconv.FormatUint(it.Seq, 10), it.Time,
			events.StateCheckpoint{Upto: it.Seq, Parts: 1, Items: []events.Item{it}})
		if err == nil {
			futures[i], err = events.PublishAsync(d.js, events.RestatementSubject(it.Subject), evs[i])
		}
		if err != nil {
			break
		}
	}
	for i, f := range futures {
		if f == nil {
			break
		}
		if _, ferr := events.PublishResult(rctx, d.js, f, evs[i]); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		d.failing = true
		if ctx.Err() == nil {
			d.log.Error().Err(err).Int("items", len(items)).Msg("transitions of batches leaving their slots not restated, retrying")
		}
		return fmt.Errorf("restate %d transitions of batches leaving their slots: %w", len(items), err)
	}
	for _, it := range items {
		d.markRestated(it.Subject, it.Seq)
	}
	d.o.Stats.Restated.Add(uint64(len(items)))
	d.log.Debug().Int("items", len(items)).Msg("state restated")
	return nil
}

// readRecorded returns the latest event STATE recorded on each of subjects, wherever it was
// recorded: alone on the subject, in one of the last batches, restated, or in a checkpoint.
func (d *decider) readRecorded(ctx context.Context, subjects []string) map[string]events.Fact {
	want := map[string]bool{}
	for _, s := range subjects {
		want[s] = true
	}
	out := map[string]events.Fact{}
	read := func(subject string) bool {
		rctx, cancel := context.WithTimeout(ctx, appendTimeout)
		defer cancel()
		e, seq, ok, err := events.Last(rctx, d.state, subject)
		if err != nil || !ok {
			return ok
		}
		facts, err := events.Facts(subject, seq, e)
		if err != nil {
			return true
		}
		for _, f := range facts {
			if want[f.Subject] && f.Seq > out[f.Subject].Seq {
				out[f.Subject] = f
			}
		}
		return true
	}
	for _, s := range subjects {
		read(s)
		read(events.RestatementSubject(s))
	}
	for i := uint64(0); i < events.BatchSlots; i++ {
		read(events.BatchSubject(i))
	}
	for part := 0; read(events.CheckpointSubject(part)); part++ {
	}
	return out
}

package decider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// checkpointEvery is how many batches the decider appends before it restates STATE in a
// checkpoint; checkpointAfter how long a batch stays without one at most. A checkpoint must cover
// every batch whose slot is about to be reused (events.BatchSlots batches back), and is written
// before that batch when the regular ones did not make it.
const (
	checkpointEvery = events.BatchSlots / 2
	checkpointAfter = time.Minute
	// checkpointTimeout bounds the writing of every part of one checkpoint (megabytes at 10,000
	// endpoints).
	checkpointTimeout = 10 * time.Second
)

// batches is what the decider knows of STATE's batches and checkpoints.
type batches struct {
	// known is set once a batch has been seen; last is the index of the newest, stored at
	// lastSeq with id lastID and time lastTime.
	known    bool
	last     uint64
	lastSeq  uint64
	lastID   string
	lastTime time.Time
	// slots is the last sequence of each batch slot.
	slots [events.BatchSlots]uint64
	// cpKnown is set once a complete checkpoint has been seen; cpIndex is the batch the newest
	// covers, cpAt when this replica learnt of it (its own clock).
	cpKnown bool
	cpIndex uint64
	cpAt    time.Time
	// cpParts counts the parts seen of checkpoints not yet complete, by index.
	cpParts map[uint64]int
}

// next is the index of the next batch.
func (b *batches) next() uint64 {
	if !b.known {
		return 0
	}
	return b.last + 1
}

// saw notes batch index, stored at seq with id and time at.
func (b *batches) saw(index, seq uint64, id string, at time.Time) {
	if slot := index % events.BatchSlots; seq > b.slots[slot] {
		b.slots[slot] = seq
	}
	if !b.known || index > b.last {
		b.known, b.last, b.lastSeq, b.lastID, b.lastTime = true, index, seq, id, at
	}
}

// sawCheckpoint notes one part of a checkpoint of index, or the whole of it when parts is 0.
func (b *batches) sawCheckpoint(index uint64, parts int, now time.Time) {
	if b.cpKnown && index <= b.cpIndex {
		return
	}
	if parts > 0 {
		if b.cpParts == nil {
			b.cpParts = map[uint64]int{}
		}
		if b.cpParts[index]++; b.cpParts[index] < parts {
			return
		}
	}
	b.cpKnown, b.cpIndex, b.cpAt = true, index, now
	for i := range b.cpParts {
		if i <= index {
			delete(b.cpParts, i)
		}
	}
}

// behind reports whether the newest batch is not covered by a checkpoint.
func (b *batches) behind() bool { return b.known && (!b.cpKnown || b.cpIndex < b.last) }

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
	if b := &d.batches; !b.cpKnown && b.last+1 >= checkpointEvery || b.cpKnown && b.last-b.cpIndex >= checkpointEvery {
		d.checkpoint(ctx)
	}
	return out, nil
}

// itemSize is about how many bytes it takes in a batch.
func itemSize(it events.Item) int {
	return len(it.Subject) + len(it.Type) + len(it.ID) + len(it.Source) + len(it.Cause) + len(it.Data) + 96
}

// appendBatch appends items as the next batch, on its slot, expecting the slot's last sequence.
// A checkpoint is written first when the batch about to be replaced in the slot is not covered
// by one.
func (d *decider) appendBatch(ctx context.Context, items []events.Item) (uint64, bool, error) {
	b := &d.batches
	index := b.next()
	if index >= events.BatchSlots && (!b.cpKnown || b.cpIndex+events.BatchSlots < index) {
		if err := d.checkpoint(ctx); err != nil {
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
	b.saw(index, ack.Sequence, ev.ID, ev.Time)
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

// noteBatch notes the batch or checkpoint part a STATE delivery carries.
func (d *decider) noteBatch(m delivery) {
	switch {
	case m.batch != nil:
		d.batches.saw(m.batch.Index, m.seq, m.env.ID, m.env.Time)
	case m.checkpoint != nil:
		d.batches.sawCheckpoint(m.checkpoint.Index, m.checkpoint.Parts, d.o.Now())
	}
}

// checkpoint restates the last transition of every endpoint and pool STATE recorded up to the
// newest batch, in parts within events.MaxBatchBytes each, all stored before it returns.
func (d *decider) checkpoint(ctx context.Context) error {
	b := &d.batches
	if !b.known {
		return nil
	}
	started := d.o.Now()
	upto, index := b.lastSeq, b.last
	var items []events.Item
	add := func(subject string, seq uint64, env events.Envelope) {
		it := events.ItemOf(subject, seq, env)
		if seq > 0 && events.CheckItem(it, upto) == nil {
			items = append(items, it)
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
	slices.SortFunc(items, func(a, b events.Item) int { return strings.Compare(a.Subject, b.Subject) })
	parts := [][]events.Item{nil}
	size := 0
	for _, it := range items {
		n := itemSize(it)
		if last := len(parts) - 1; len(parts[last]) > 0 && size+n > events.MaxBatchBytes {
			parts, size = append(parts, nil), 0
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], it)
		size += n
	}
	cctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
	defer cancel()
	evs := make([]events.Envelope, len(parts))
	futures := make([]jetstream.PubAckFuture, len(parts))
	var err error
	for i, part := range parts {
		key := fmt.Sprintf("%d|%d/%d", index, i, len(parts))
		evs[i], err = events.Derived(events.TypeStateCheckpoint, d.o.Name, b.lastID, key, b.lastTime,
			events.StateCheckpoint{Index: index, Upto: upto, Part: i, Parts: len(parts), Items: part})
		if err == nil {
			futures[i], err = events.PublishAsync(d.js, events.CheckpointSubject(i), evs[i])
		}
		if err != nil {
			break
		}
	}
	for i, f := range futures {
		if f == nil {
			break
		}
		if _, ferr := events.PublishResult(cctx, d.js, f, evs[i]); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		d.failing = true
		if ctx.Err() == nil {
			d.log.Error().Err(err).Uint64("batch", index).Msg("state checkpoint not written, retrying")
		}
		return fmt.Errorf("write checkpoint of batch %d: %w", index, err)
	}
	b.sawCheckpoint(index, 0, d.o.Now())
	d.o.Stats.Checkpoints.Add(1)
	d.log.Info().Uint64("batch", index).Uint64("stream_seq", upto).Int("items", len(items)).Int("parts", len(parts)).
		Dur("duration", d.o.Now().Sub(started)).Msg("state checkpoint")
	return nil
}

// readRecorded returns the latest event STATE recorded on each of subjects, wherever it was
// recorded: alone on the subject, in one of the last batches or in the checkpoint.
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
	}
	for i := uint64(0); i < events.BatchSlots; i++ {
		read(events.BatchSubject(i))
	}
	for part := 0; read(events.CheckpointSubject(part)); part++ {
	}
	return out
}

// decodeBatch decodes what a batch or a checkpoint part says of itself, for noteBatch.
func decodeBatch(dl *delivery) {
	var head struct {
		Index uint64 `json:"index"`
		Parts int    `json:"parts"`
	}
	if json.Unmarshal(dl.env.Data, &head) != nil {
		return
	}
	switch dl.env.Type {
	case events.TypeStateBatch:
		dl.batch = &events.StateBatch{Index: head.Index}
	case events.TypeStateCheckpoint:
		dl.checkpoint = &events.StateCheckpoint{Index: head.Index, Parts: head.Parts}
	}
}

package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The decider records the endpoint and pool transitions of one decision round together, as one
// TypeStateBatch event (or several back to back when they outgrow MaxBatchBytes), instead of one
// message per transition: JetStream's cost is per message, so ten thousand transitions in one
// round cost tens of appends, not twenty thousand. Each item of a batch is exactly the event it
// stands for, with the STATE subject it would have been stored on; readers fold it through Facts
// as if it were that event stored at the batch's sequence.
//
// Batch i goes on BatchSubject(i), one of BatchSlots subjects in turn, each append expecting that
// subject's last sequence (Nats-Expected-Last-Subject-Sequence): a replica that missed batch i-1
// appends batch i onto a slot another replica already wrote and is refused, so racing replicas
// record each change once. Reading the last message of every STATE subject (the start of every
// follower) so yields the last BatchSlots batches, and the last TypeStateCheckpoint part on each
// CheckpointSubject: the decider writes a checkpoint before the batch that would push one it
// covers out of those slots, so the two together restate every transition batches recorded.
const (
	// TypeStateBatch carries a StateBatch: transitions decided in one round.
	TypeStateBatch = "detour.state.batch.v1"
	// TypeStateCheckpoint carries a StateCheckpoint: one part of a restatement of the last
	// transition of every endpoint and pool, complete up to a batch.
	TypeStateCheckpoint = "detour.state.checkpoint.v1"
)

// BatchSlots is how many subjects batches take in turn (BatchSubject).
const BatchSlots = 64

// MaxBatchBytes bounds the encoded items of one batch or checkpoint part: well under NATS's
// default max_payload (1 MiB), so that neither is refused nor holds a stream replica's
// replication back for long.
const MaxBatchBytes = 256 << 10

// maxCheckpointParts bounds the parts of one checkpoint: MaxBatchBytes each, 256 MiB in all.
const maxCheckpointParts = 1024

// Subject prefixes of batches and checkpoints.
const (
	stateBatchPrefix      = "detour.state.batch"
	stateCheckpointPrefix = "detour.state.checkpoint"
)

// BatchSubject is where batch index is appended: slot index mod BatchSlots.
func BatchSubject(index uint64) string {
	return stateBatchPrefix + "." + strconv.FormatUint(index%BatchSlots, 10)
}

// CheckpointSubject is where part part of every checkpoint is stored.
func CheckpointSubject(part int) string {
	return stateCheckpointPrefix + "." + strconv.Itoa(part)
}

// SubjectBatches and SubjectCheckpoints match every batch and every checkpoint part.
const (
	SubjectBatches     = stateBatchPrefix + ".*"
	SubjectCheckpoints = stateCheckpointPrefix + ".*"
)

// Item is one event inside a batch or a checkpoint, with the STATE subject it stands for.
type Item struct {
	// Subject is the endpoint's or pool's STATE subject.
	Subject string `json:"subject"`
	// Seq is, in a checkpoint, the stream sequence of the batch (or event) that recorded the
	// item; zero in a batch, whose items were recorded at the batch's own sequence.
	Seq    uint64    `json:"seq,omitempty"`
	Type   string    `json:"type"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Source string    `json:"source,omitempty"`
	Cause  string    `json:"cause,omitempty"`
	// Data is the Transition.
	Data json.RawMessage `json:"data"`
}

// ItemOf is e, to be recorded on subject (at seq, in a checkpoint), as an item.
func ItemOf(subject string, seq uint64, e Envelope) Item {
	return Item{Subject: subject, Seq: seq, Type: e.Type, ID: e.ID, Time: e.Time, Source: e.Source, Cause: e.Cause, Data: e.Data}
}

// envelope is the event the item stands for; source is the container's when the item has none.
func (it Item) envelope(source string) Envelope {
	if it.Source != "" {
		source = it.Source
	}
	return Envelope{Type: it.Type, ID: it.ID, Time: it.Time, Source: source, Cause: it.Cause, Data: it.Data}
}

// StateBatch is the transitions of one decision round (or part of one).
type StateBatch struct {
	// Index numbers the batches from 0; batch i is appended on BatchSubject(i).
	Index uint64 `json:"index"`
	Items []Item `json:"items"`
}

// StateCheckpoint is one part of a checkpoint: the last transition of some endpoints and pools,
// as STATE held them once batch Index (stored at sequence Upto) was appended. Parts split the
// items by bytes; part Part of Parts goes on CheckpointSubject(Part).
type StateCheckpoint struct {
	Index uint64 `json:"index"`
	Upto  uint64 `json:"upto"`
	Part  int    `json:"part"`
	Parts int    `json:"parts"`
	Items []Item `json:"items"`
}

// Fact is one event as STATE's readers fold it: a lone event on its subject, or one item of a
// batch or a checkpoint, with the subject it stands for and the sequence it was recorded at.
type Fact struct {
	Subject string
	Seq     uint64
	Env     Envelope
	// Restated is set for an item of a checkpoint: a transition recorded earlier, said again so
	// that a reader starting from the last message of each subject has it. Readers of history
	// (replay, detour events) skip it; folding it changes nothing a reader already had.
	Restated bool
}

// IsStateBatch reports whether events of type typ carry several facts (a batch or a checkpoint).
func IsStateBatch(typ string) bool { return typ == TypeStateBatch || typ == TypeStateCheckpoint }

// Facts returns the facts the STATE event e, stored on subject at seq, records: e itself, or
// every item of a batch (at seq) or of a checkpoint (each at its own sequence). A batch or a
// checkpoint that is not valid as a whole is an error wrapping ErrMalformed, and none of its
// items is returned.
func Facts(subject string, seq uint64, e Envelope) ([]Fact, error) {
	switch e.Type {
	case TypeStateBatch:
		b, err := DecodeBatch(subject, e)
		if err != nil {
			return nil, err
		}
		out := make([]Fact, len(b.Items))
		for i, it := range b.Items {
			out[i] = Fact{Subject: it.Subject, Seq: seq, Env: it.envelope(e.Source)}
		}
		return out, nil
	case TypeStateCheckpoint:
		c, err := DecodeCheckpoint(subject, seq, e)
		if err != nil {
			return nil, err
		}
		out := make([]Fact, len(c.Items))
		for i, it := range c.Items {
			out[i] = Fact{Subject: it.Subject, Seq: it.Seq, Env: it.envelope(e.Source), Restated: true}
		}
		return out, nil
	}
	return []Fact{{Subject: subject, Seq: seq, Env: e}}, nil
}

// DecodeBatch decodes and checks the batch e stored on subject: the subject is its index's
// slot, it holds at least one item, and each item is a transition of an endpoint or a pool on
// a subject no other item names.
func DecodeBatch(subject string, e Envelope) (StateBatch, error) {
	var b StateBatch
	if e.Type != TypeStateBatch {
		return b, fmt.Errorf("%w: type: %s is no %s", ErrMalformed, e.Type, TypeStateBatch)
	}
	if err := e.Payload(&b); err != nil {
		return StateBatch{}, err
	}
	if want := BatchSubject(b.Index); subject != want {
		return StateBatch{}, fmt.Errorf("%w: %s index: %d belongs on %s, not %s", ErrMalformed, e.Type, b.Index, want, subject)
	}
	if len(b.Items) == 0 {
		return StateBatch{}, fmt.Errorf("%w: %s items: empty", ErrMalformed, e.Type)
	}
	if err := checkItems(e.Type, b.Items, 0); err != nil {
		return StateBatch{}, err
	}
	return b, nil
}

// DecodeCheckpoint decodes and checks the checkpoint part e stored on subject at seq: the
// subject is its part's, the part is one of its parts, and each item is a transition of an
// endpoint or a pool, recorded at a sequence no later than the checkpoint's own, on a subject no
// other item names.
func DecodeCheckpoint(subject string, seq uint64, e Envelope) (StateCheckpoint, error) {
	var c StateCheckpoint
	if e.Type != TypeStateCheckpoint {
		return c, fmt.Errorf("%w: type: %s is no %s", ErrMalformed, e.Type, TypeStateCheckpoint)
	}
	if err := e.Payload(&c); err != nil {
		return StateCheckpoint{}, err
	}
	switch {
	case c.Parts < 1 || c.Parts > maxCheckpointParts:
		return StateCheckpoint{}, fmt.Errorf("%w: %s parts: want 1 to %d, got %d", ErrMalformed, e.Type, maxCheckpointParts, c.Parts)
	case c.Part < 0 || c.Part >= c.Parts:
		return StateCheckpoint{}, fmt.Errorf("%w: %s part: want 0 to %d, got %d", ErrMalformed, e.Type, c.Parts-1, c.Part)
	case subject != CheckpointSubject(c.Part):
		return StateCheckpoint{}, fmt.Errorf("%w: %s part: %d belongs on %s, not %s", ErrMalformed, e.Type, c.Part, CheckpointSubject(c.Part), subject)
	case c.Upto == 0 || (seq != 0 && c.Upto >= seq):
		return StateCheckpoint{}, fmt.Errorf("%w: %s upto: %d is not before the checkpoint's own sequence %d", ErrMalformed, e.Type, c.Upto, seq)
	}
	if err := checkItems(e.Type, c.Items, c.Upto); err != nil {
		return StateCheckpoint{}, err
	}
	return c, nil
}

// checkItems checks the items of a batch (upto 0: no item has a sequence of its own) or of a
// checkpoint (every item's sequence in 1..upto).
func checkItems(typ string, items []Item, upto uint64) error {
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		field := fmt.Sprintf("%s items[%d]", typ, i)
		kind, _ := StateAggregate(it.Subject)
		switch {
		case kind != "endpoint" && kind != "pool":
			return fmt.Errorf("%w: %s.subject: %q is no endpoint or pool subject", ErrMalformed, field, it.Subject)
		case seen[it.Subject]:
			return fmt.Errorf("%w: %s.subject: %s appears twice", ErrMalformed, field, it.Subject)
		case !TypeBelongs(kind, it.Type):
			return fmt.Errorf("%w: %s.type: %q does not belong on %s subjects", ErrMalformed, field, it.Type, kind)
		case it.ID == "":
			return fmt.Errorf("%w: %s.id: missing", ErrMalformed, field)
		case it.Time.IsZero():
			return fmt.Errorf("%w: %s.time: missing", ErrMalformed, field)
		case upto == 0 && it.Seq != 0:
			return fmt.Errorf("%w: %s.seq: a batch's items are recorded at the batch's sequence, got %d", ErrMalformed, field, it.Seq)
		case upto != 0 && (it.Seq == 0 || it.Seq > upto):
			return fmt.Errorf("%w: %s.seq: want 1 to %d, got %d", ErrMalformed, field, upto, it.Seq)
		}
		var t Transition
		if err := json.Unmarshal(it.Data, &t); err != nil {
			return fmt.Errorf("%w: %s.data: %v", ErrMalformed, field, err)
		}
		seen[it.Subject] = true
	}
	return nil
}

// StateAggregate splits a STATE subject into its kind (endpoint, pool, edge, override) and the
// tokens naming the aggregate, or returns "" when it is none of them (or has the wrong number of
// tokens for its kind, or a token that is not valid).
func StateAggregate(subject string) (string, []string) {
	rest, ok := strings.CutPrefix(subject, "detour.state.")
	if !ok {
		return "", nil
	}
	kind, rest, ok := strings.Cut(rest, ".")
	var n int
	switch kind {
	case "endpoint", "override":
		n = 3
	case "pool":
		n = 2
	case "edge":
		n = 1
	}
	t := strings.Split(rest, ".")
	if !ok || n == 0 || len(t) != n {
		return "", nil
	}
	for _, tok := range t {
		if !ValidToken(tok) {
			return "", nil
		}
	}
	return kind, t
}

// TypeBelongs reports whether events of type typ may be recorded on STATE subjects of kind.
func TypeBelongs(kind, typ string) bool {
	switch kind {
	case "endpoint":
		return typ == TypeEndpointUp || typ == TypeEndpointDown || typ == TypeEndpointDrained
	case "pool":
		return typ == TypePoolUp || typ == TypePoolDown
	case "edge":
		return typ == TypeEdgeUp || typ == TypeEdgeDown
	case "override":
		return typ == TypeOverrideSet || typ == TypeOverrideCleared
	}
	return false
}

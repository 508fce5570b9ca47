package events

import (
	"errors"
	"slices"
)

// Sent follows the appends a writer sent to one subject, each with what the writer counts once
// it is stored (T), until the writer learns whether the stream stored it as this writer's. Each
// append expects the sequence the subject was at (its after), so at most one of those sent after
// one sequence is stored, and the first event the stream holds on the subject past that sequence
// settles them all. The writer learns it from:
//   - an acknowledgement that is not a duplicate's: stored;
//   - a conflict or another refusal (NotStored): not stored, unless an earlier attempt with the
//     same id went unanswered;
//   - the stream delivering the subject's events in order, each with its source: the event past
//     an append's sequence is this writer's append, or the append was never stored.
//
// An attempt that went unanswered (the node leading the stream died between storing it and
// answering, or the answer came too late) is counted when the stream delivers it; one delivered
// before its answer came is counted on its answer, or when none comes. A duplicate's answer
// decides nothing: it may be another writer's copy of the same derived event, and the delivery
// tells whose by its source. Two writers sharing a name can each take the other's delivery for
// its own only where their own attempt went unanswered. The zero value is ready to use.
type Sent[T any] struct {
	attempts []sentAttempt[T]
}

type sentAttempt[T any] struct {
	id    string
	after uint64
	info  T
	// unanswered is set once an attempt with this id failed without an answer from JetStream.
	unanswered bool
	// seen is set when the stream delivered the event from this writer, at seq, before the
	// answer came.
	seen bool
	seq  uint64
}

// Stored is an append known stored by its writer: what the writer noted with it, and the
// sequence the stream holds it at.
type Stored[T any] struct {
	Info T
	Seq  uint64
}

// maxSent bounds the attempts followed: a retry every append timeout through an election of
// half a minute. Past it, a new attempt takes the place of the last one: the first was the
// likeliest stored (sent as the leader died), the later ones went to a stream without a leader.
const maxSent = 32

// Add notes the append of the event id after sequence after, with info.
func (s *Sent[T]) Add(after uint64, id string, info T) {
	if s.find(id) != nil {
		return
	}
	if len(s.attempts) == maxSent {
		s.attempts = s.attempts[:maxSent-1]
	}
	s.attempts = append(s.attempts, sentAttempt[T]{id: id, after: after, info: info})
}

// Acked takes the acknowledgement of the append of id, stored at seq or a duplicate of what is
// stored there, and returns it when it is known stored by this writer (nil otherwise).
func (s *Sent[T]) Acked(id string, seq uint64, duplicate bool) *Stored[T] {
	a := s.find(id)
	switch {
	case a == nil:
		return nil
	case !duplicate:
		out := &Stored[T]{Info: a.info, Seq: seq}
		s.settle(a.after)
		return out
	case !a.unanswered: // another writer's copy
		s.drop(id)
	}
	return nil
}

// Failed takes the failure err of the append of id, and returns it when it is known stored by
// this writer after all (nil otherwise): the stream delivered it and no answer came.
func (s *Sent[T]) Failed(id string, err error) *Stored[T] {
	a := s.find(id)
	switch {
	case a == nil:
	case NotStored(err):
		if !a.unanswered {
			s.drop(id)
		}
	case a.seen:
		out := &Stored[T]{Info: a.info, Seq: a.seq}
		s.settle(a.after)
		return out
	default:
		a.unanswered = true
	}
	return nil
}

// Delivered takes the stream delivering, in order, the event id stored at seq on the subject,
// from this writer (own) or another, and returns the append it is when that is known stored by
// this writer: its attempt went unanswered. One still waiting for its answer is noted seen, and
// its answer decides, also when the events stored after it are delivered before that answer
// (the loop handling the answer is behind the stream). Every other append after a sequence
// below seq was not stored.
func (s *Sent[T]) Delivered(id string, seq uint64, own bool) *Stored[T] {
	var out *Stored[T]
	s.attempts = slices.DeleteFunc(s.attempts, func(a sentAttempt[T]) bool {
		switch {
		case a.after >= seq, a.seen:
			return false
		case !own || a.id != id:
			return true
		case a.unanswered:
			out = &Stored[T]{Info: a.info, Seq: seq}
			return true
		}
		return false
	})
	if a := s.find(id); a != nil && own && a.after < seq {
		a.seen, a.seq = true, seq
	}
	return out
}

// Unanswered reports whether an append sent after sequence after, or a later one, went
// unanswered and is not settled yet: the stream may hold it past after, though the writer never
// learnt it did, or store it still (a leader slow to store it as well as to answer).
func (s *Sent[T]) Unanswered(after uint64) bool {
	for _, a := range s.attempts {
		if a.unanswered && a.after >= after {
			return true
		}
	}
	return false
}

// Info returns what the writer noted with the append of id, while it is followed.
func (s *Sent[T]) Info(id string) (T, bool) {
	if a := s.find(id); a != nil {
		return a.info, true
	}
	var zero T
	return zero, false
}

// settle forgets the appends sent after sequence after: one of them is stored.
func (s *Sent[T]) settle(after uint64) {
	s.attempts = slices.DeleteFunc(s.attempts, func(a sentAttempt[T]) bool { return a.after == after })
}

func (s *Sent[T]) drop(id string) {
	s.attempts = slices.DeleteFunc(s.attempts, func(a sentAttempt[T]) bool { return a.id == id })
}

func (s *Sent[T]) find(id string) *sentAttempt[T] {
	for i := range s.attempts {
		if s.attempts[i].id == id {
			return &s.attempts[i]
		}
	}
	return nil
}

// NotStored reports whether err, an append's failure, is JetStream's answer that it did not store
// the message (a conflict, or another refusal), rather than no answer (a timeout, a lost
// connection), after which it may have.
func NotStored(err error) bool { return errors.Is(err, ErrConflict) || apiErrorCode(err) != 0 }

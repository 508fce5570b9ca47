package events

import (
	"errors"
	"slices"
)

// Sent follows the appends a writer sent to one subject after one sequence of it, each with what
// the writer counts once it is stored (T), until the writer learns which of them STATE stored.
// At most one can be: each expects that sequence. The writer learns it from an acknowledgement
// that is not a duplicate's; from a duplicate's when an earlier attempt with the same id went
// unanswered (the node leading the stream died between storing it and answering, or the answer
// came too late); or from the stream delivering the event with the writer as its source, once
// its attempt went unanswered, or before its answer came if none then does. A duplicate otherwise
// is another writer's copy of the same derived event, and a conflict says the attempt was not
// stored. Two writers sharing a name can each take the other's delivery for its own only where
// their own attempt went unanswered. The zero value is ready to use.
type Sent[T any] struct {
	after    uint64
	attempts []sentAttempt[T]
}

type sentAttempt[T any] struct {
	id   string
	info T
	// unanswered is set once an attempt with this id failed without an answer from JetStream.
	unanswered bool
	// seen is set when the stream delivered the event from this writer, at seq, before the
	// answer came.
	seen bool
	seq  uint64
}

// maxSent bounds the attempts followed after one sequence: a retry every append timeout through
// an election of half a minute. Past it, a new attempt takes the place of the last unanswered
// one: the first was the likeliest stored (sent as the leader died), the later ones went to a
// stream without a leader.
const maxSent = 32

// Add notes the append of the event id after sequence after, with info. Appends after another
// sequence than the last one's end what was followed: the subject moved on.
func (s *Sent[T]) Add(after uint64, id string, info T) {
	if after != s.after {
		s.after, s.attempts = after, nil
	}
	if s.find(id) != nil {
		return
	}
	if len(s.attempts) == maxSent {
		s.attempts = s.attempts[:maxSent-1]
	}
	s.attempts = append(s.attempts, sentAttempt[T]{id: id, info: info})
}

// Stored is an append known stored by its writer: what the writer noted with it, and the
// sequence the stream holds it at.
type Stored[T any] struct {
	Info T
	Seq  uint64
}

// Acked takes the acknowledgement of the append of id, stored at seq or a duplicate of what is
// stored there, and returns it when it is known stored by this writer (nil otherwise). Either way
// the subject moved past the appends followed, which are forgotten.
func (s *Sent[T]) Acked(id string, seq uint64, duplicate bool) *Stored[T] {
	var out *Stored[T]
	if a := s.find(id); a != nil && (!duplicate || a.unanswered) {
		out = &Stored[T]{Info: a.info, Seq: seq}
	}
	s.after, s.attempts = 0, nil
	return out
}

// Failed takes the failure err of the append of id, and returns it when it is known stored by
// this writer after all (nil otherwise): the stream delivered it and no answer came.
func (s *Sent[T]) Failed(id string, err error) *Stored[T] {
	a := s.find(id)
	switch {
	case a == nil:
		return nil
	case NotStored(err):
		if !a.unanswered { // never stored: no need to follow it
			s.attempts = slices.DeleteFunc(s.attempts, func(x sentAttempt[T]) bool { return x.id == id })
		}
		return nil
	case a.seen:
		out := &Stored[T]{Info: a.info, Seq: a.seq}
		s.after, s.attempts = 0, nil
		return out
	}
	a.unanswered = true
	return nil
}

// Delivered takes the stream holding the event id at seq with this writer as its source (as it
// delivers it, or as a read of the subject finds it), and returns it when it is known stored by
// this writer: its attempt went unanswered. Otherwise (nil) the answer is still to come, and
// decides.
func (s *Sent[T]) Delivered(id string, seq uint64) *Stored[T] {
	a := s.find(id)
	if a == nil {
		return nil
	}
	if a.unanswered {
		out := &Stored[T]{Info: a.info, Seq: seq}
		s.after, s.attempts = 0, nil
		return out
	}
	a.seen, a.seq = true, seq
	return nil
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

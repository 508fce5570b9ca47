package events_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSentCountsAnAppendOnceWhenItIsKnownToBeThisWritersOwn(t *testing.T) {
	timeout := fmt.Errorf("append: %w", context.DeadlineExceeded)
	conflict := fmt.Errorf("append: %w", events.ErrConflict)
	refused := fmt.Errorf("append: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"})
	// Each step: add (an append sent, after sequence 5 unless said), ack or dup (its
	// acknowledgement), fail (its failure), seen or other (the stream delivering the event at
	// sequence 9 unless said, from this writer or another), of the id given. want is the id
	// known stored at that step, "" for none.
	type step struct {
		op, id     string
		err        error
		after, seq uint64
		want       string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"an acknowledgement counts", []step{{op: "add", id: "x"}, {op: "ack", id: "x", want: "x"}, {op: "seen", id: "x"}}},
		{"the stream delivering first, then the acknowledgement, counts once", []step{{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "ack", id: "x", want: "x"}}},
		{"an answer lost, then the event delivered", []step{{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "seen", id: "x", want: "x"}, {op: "seen", id: "x"}}},
		{"the event delivered, then no answer", []step{{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "fail", id: "x", err: timeout, want: "x"}}},
		{"the event delivered, then another writer's next event, then the acknowledgement", []step{
			{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "other", id: "z", seq: 10}, {op: "ack", id: "x", want: "x"}}},
		{"the event delivered, then the next event of a writer of the same name, then the acknowledgement", []step{
			{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "seen", id: "z", seq: 10}, {op: "ack", id: "x", want: "x"}}},
		{"the event delivered, then another writer's next event, then no answer", []step{
			{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "other", id: "z", seq: 10}, {op: "fail", id: "x", err: timeout, want: "x"}}},
		{"an answer lost, the retry a duplicate, this writer's copy delivered", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "x"}, {op: "dup", id: "x"}, {op: "seen", id: "x", want: "x"}}},
		{"an answer lost, the retry a duplicate of another writer's copy", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "x"}, {op: "dup", id: "x"}, {op: "other", id: "x"}, {op: "seen", id: "x", seq: 10}}},
		{"a duplicate of another writer's copy", []step{{op: "add", id: "x"}, {op: "dup", id: "x"}, {op: "other", id: "x"}}},
		{"a conflict: another writer's event stored", []step{{op: "add", id: "x"}, {op: "fail", id: "x", err: conflict}, {op: "seen", id: "x"}}},
		{"another writer of the same name: delivered, then a conflict", []step{{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "fail", id: "x", err: conflict}}},
		{"another writer of the same name: delivered, its next event delivered, then a conflict", []step{
			{op: "add", id: "x"}, {op: "seen", id: "x"}, {op: "seen", id: "z", seq: 10}, {op: "fail", id: "x", err: conflict}}},
		{"a refusal is not a lost answer", []step{{op: "add", id: "x"}, {op: "fail", id: "x", err: refused}, {op: "seen", id: "x"}}},
		{"an answer lost, the same id's retry refused as a conflict, the first delivered", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "x"}, {op: "fail", id: "x", err: conflict}, {op: "seen", id: "x", want: "x"}}},
		{"an answer lost, a retry of another id refused as a conflict, the first delivered", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "y"}, {op: "fail", id: "y", err: conflict}, {op: "seen", id: "x", want: "x"}}},
		{"an answer lost, a retry of another id unanswered too, the retry delivered", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "y"}, {op: "fail", id: "y", err: timeout}, {op: "seen", id: "y", want: "y"}, {op: "seen", id: "x", seq: 10}}},
		{"an unanswered append outlives one sent after a later sequence (a re-read skipped it)", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "add", id: "y", after: 7}, {op: "seen", id: "x", seq: 6, want: "x"}, {op: "ack", id: "y", want: "y"}}},
		{"another writer's event settles the appends before it", []step{
			{op: "add", id: "x"}, {op: "fail", id: "x", err: timeout}, {op: "other", id: "z"}, {op: "seen", id: "x", seq: 10}}},
		{"an unknown id's acknowledgement", []step{{op: "add", id: "x"}, {op: "ack", id: "z"}, {op: "ack", id: "x", want: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s events.Sent[string]
			for i, st := range tt.steps {
				after, seq := st.after, st.seq
				if after == 0 {
					after = 5
				}
				if seq == 0 {
					seq = 9
				}
				var got *events.Stored[string]
				switch st.op {
				case "add":
					s.Add(after, st.id, "info of "+st.id)
				case "ack", "dup":
					got = s.Acked(st.id, seq, st.op == "dup")
				case "fail":
					got = s.Failed(st.id, st.err)
				case "seen", "other":
					got = s.Delivered(st.id, seq, st.op == "seen")
				}
				switch {
				case st.want == "" && got != nil:
					t.Fatalf("step %d (%s %s): %+v known stored, want none", i, st.op, st.id, *got)
				case st.want != "" && (got == nil || got.Info != "info of "+st.want || got.Seq != seq):
					t.Fatalf("step %d (%s %s): %+v, want %s known stored at %d", i, st.op, st.id, got, st.want, seq)
				}
			}
		})
	}
}

func TestSentFollowsTheFirstAttemptsOfALongElectionAndTheLatest(t *testing.T) {
	timeout := fmt.Errorf("append: %w", context.DeadlineExceeded)
	unanswered := func() *events.Sent[string] {
		var s events.Sent[string]
		for i := range 100 {
			id := fmt.Sprint("x", i)
			s.Add(5, id, id)
			if got := s.Failed(id, timeout); got != nil {
				t.Fatalf("attempt %d known stored on its timeout", i)
			}
		}
		return &s
	}
	// The first attempt, sent as the leader died, is the likeliest stored: it is still followed.
	if got := unanswered().Delivered("x0", 6, true); got == nil || got.Info != "x0" {
		t.Fatalf("the first of 100 unanswered attempts delivered: %+v, want it known stored", got)
	}
	// And so is the attempt sent once a leader answers again.
	s := unanswered()
	s.Add(5, "y", "y")
	if got := s.Acked("y", 6, false); got == nil || got.Info != "y" {
		t.Fatalf("an attempt acknowledged after 100 unanswered: %+v, want it known stored", got)
	}
}

func TestSentTellsAnAppendThatWentUnansweredUntilTheStreamSettlesIt(t *testing.T) {
	timeout := fmt.Errorf("append: %w", context.DeadlineExceeded)
	conflict := fmt.Errorf("append: %w", events.ErrConflict)
	var s events.Sent[string]
	s.Add(5, "x", "info of x")
	if s.Unanswered(5) {
		t.Fatal("an append waiting for its answer is unanswered")
	}
	s.Failed("x", timeout)
	if !s.Unanswered(5) || !s.Unanswered(4) {
		t.Fatal("an append after 5 whose answer timed out is not unanswered after 5")
	}
	if s.Unanswered(6) {
		t.Fatal("an append after 5 is unanswered after 6, which the stream holds already")
	}
	if info, ok := s.Info("x"); !ok || info != "info of x" {
		t.Fatalf("Info(x) = %q, %v, want its info", info, ok)
	}
	s.Add(5, "y", "info of y")
	s.Failed("y", conflict)
	if _, ok := s.Info("y"); ok {
		t.Fatal("a refused append is still followed")
	}
	s.Delivered("z", 6, false)
	if s.Unanswered(5) {
		t.Fatal("an append after 5 is unanswered once another writer's event at 6 was delivered")
	}
	if _, ok := s.Info("x"); ok {
		t.Fatal("an append settled by another writer's event is still followed")
	}
}

func TestNotStoredTellsARefusalFromNoAnswer(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("append: %w", events.ErrConflict), true},
		{fmt.Errorf("append: %w", &jetstream.APIError{Code: 400, ErrorCode: 10071}), true},
		{fmt.Errorf("append: %w", context.DeadlineExceeded), false},
		{errors.New("nats: connection closed"), false},
	} {
		if got := events.NotStored(tt.err); got != tt.want {
			t.Errorf("NotStored(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

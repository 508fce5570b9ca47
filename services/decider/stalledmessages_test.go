package decider

import (
	"context"
	"testing"
)

// TestAMessageWhoseDecisionsAreKeptWhileTheAppendsAreStalledIsCountedOnceTheyAreSent:
// Stats.Messages counts a PROBES message once the appends its decisions made have landed (or
// failed). decider/a's down of w1 went unanswered, and the up it folds next is kept queued for
// the next tick (see flush): the message was counted at once, as if its up were appended, while
// STATE held none, and a test waiting for the count read STATE before the up was sent. It is
// counted once the tick sends the up, and only once.
func TestAMessageWhoseDecisionsAreKeptWhileTheAppendsAreStalledIsCountedOnceTheyAreSent(t *testing.T) {
	s := stageUnanswered(t, 0)
	js := &silencing{JetStream: s.d.js}
	s.d.js = js
	ctx := context.Background()
	loop := func(id string, ok bool) { // as run's loop handles a PROBES message
		dl := s.publish(t, id, ok)
		s.d.onDelivery(ctx, dl)
		s.d.flush(ctx)
		s.d.countMessage()
		s.d.flush(ctx)
	}
	loop("eu-1", true)
	s.d.settle(ctx)
	js.silent.Store(true)
	loop("eu-2", false)
	s.d.settle(ctx) // w1's down and west's, stored but unanswered
	js.silent.Store(false)
	loop("eu-3", true)
	if !s.d.appendsStalled || len(s.d.queued) != 1 {
		t.Fatalf("the up folded after the unanswered down: stalled %t, %d queued; want it kept", s.d.appendsStalled, len(s.d.queued))
	}
	if got := s.d.o.Stats.Messages.Load(); got != 2 {
		t.Errorf("Stats.Messages is %d while the third message's up is kept, not sent; want 2", got)
	}
	s.tick()
	if got := s.d.o.Stats.Messages.Load(); got != 3 {
		t.Errorf("Stats.Messages is %d once the tick sent the up, want 3", got)
	}
}

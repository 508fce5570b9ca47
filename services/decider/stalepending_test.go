package decider

import (
	"reflect"
	"slices"
	"testing"

	"github.com/detourdev/detour/events"
)

// TestADecisionKeptForTheNextTickIsNotRedatedPastWhatStateRecords: decider/a's down of w1 was
// stored but its answer never came, and it keeps the down for the next tick. decider/b, ahead,
// records w1 up and down again (and west with it). decider/a folds the pass, reads w1 back from
// STATE's leader, and drops its up as older than b's down. On the next tick the down it kept no
// longer matches its view (up): it was explained as a decision made now, dated after every
// result still to fold, and appended: STATE showed w1 up against the probes, and every later
// decision of both replicas looked older than it, dropped, until the contradiction was
// re-asserted a second later (stress runs of two replicas with acknowledgements 0-3 ms late,
// 700 ms on one in 40, lost up to 5 of 10 flaps so). The up is the decision dropped as older,
// dated as decided: dropped again.
func TestADecisionKeptForTheNextTickIsNotRedatedPastWhatStateRecords(t *testing.T) {
	// decider/a's appends: w1 up, west up, w1 down (never answered), west down, …
	s := stageUnanswered(t, 3)
	s.fold(s.publish(t, "eu-1", true))  // w1 up at 1, west up at 2
	s.fold(s.publish(t, "eu-2", false)) // w1 down at 3, unanswered; west down at 4
	bAheadFlapsAgain(t, s)
}

// TestADecisionKeptWhileTheAppendsAreStalledIsJudgedBeforeThoseThatFailed is the test above
// with STATE's leader silent for w1's down and west's down alike (both stored, neither
// answered): none of decider/a's appends lands after them, so the up it folds next is kept
// queued for the next tick rather than read back at once. That tick judges it first: judged
// after the down kept pending (which no longer matched w1's status, so explained as made now,
// dated after every result still to fold), the up was appended against decider/b's newer down.
func TestADecisionKeptWhileTheAppendsAreStalledIsJudgedBeforeThoseThatFailed(t *testing.T) {
	s := stageUnanswered(t, 0) // every append answered, but while js is silent
	js := &silencing{JetStream: s.d.js}
	s.d.js = js
	s.fold(s.publish(t, "eu-1", true)) // w1 up at 1, west up at 2
	js.silent.Store(true)
	s.fold(s.publish(t, "eu-2", false)) // w1 down at 3, west down at 4, neither answered
	js.silent.Store(false)
	bAheadFlapsAgain(t, s)
}

// bAheadFlapsAgain has decider/b record w1 and west up and down again past decider/a's down,
// and decider/a fold the pass and the failure a tick apart; STATE must hold up, down, up, down,
// each once.
func bAheadFlapsAgain(t *testing.T, s *unansweredStage) {
	t.Helper()
	pass, fail := s.publish(t, "eu-3", true), s.publish(t, "eu-4", false)
	s.record(t, s.w1, events.StatusUp, pass, 3)
	s.record(t, s.west, events.StatusUp, pass, 4)
	s.record(t, s.w1, events.StatusDown, fail, 5)
	s.record(t, s.west, events.StatusDown, fail, 6)
	s.fold(pass)
	s.tick()
	s.fold(fail)
	s.tick()

	up := []string{"endpoint.shop.west.w1:up", "pool.shop.west:up"}
	down := []string{"endpoint.shop.west.w1:down", "pool.shop.west:down"}
	if got, want := stateHistory(t, s.d.state), slices.Concat(up, down, up, down); !reflect.DeepEqual(got, want) {
		t.Errorf("STATE history is %q, want %q", got, want)
	}
}

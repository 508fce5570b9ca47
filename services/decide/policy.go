package decide

import (
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// Policy is the set of thresholds one app's endpoints are decided with.
type Policy struct {
	// Fall consecutive failures from a region make that region see the endpoint down.
	Fall int
	// Rise consecutive successes from a region make that region see the endpoint up.
	Rise int
	// Quorum is the share of voting regions that must see the endpoint up for it to be up; a tie
	// counts as up (with two regions and 0.5, one healthy region keeps it up).
	Quorum float64
	// StaleAfter without a result makes a region stop voting until it reports fall or rise
	// results again.
	StaleAfter time.Duration
	// HoldDown is how long a recovered endpoint must stay healthy before it is up again.
	HoldDown time.Duration
	// Interval is the check interval, recorded with each transition.
	Interval time.Duration
}

// PolicyFor returns the policy of a defaulted, valid app.
func PolicyFor(a *config.App) Policy {
	return Policy{
		Fall:       a.Check.Fall,
		Rise:       a.Check.Rise,
		Quorum:     a.Quorum,
		StaleAfter: a.Check.StaleAfter.D(),
		HoldDown:   a.HoldDown.D(),
		Interval:   a.Check.Interval.D(),
	}
}

// Thresholds returns the policy as it is recorded in a transition.
func (p Policy) Thresholds() events.Thresholds {
	return events.Thresholds{
		Fall:         p.Fall,
		Rise:         p.Rise,
		Quorum:       p.Quorum,
		HoldDownMS:   p.HoldDown.Milliseconds(),
		StaleAfterMS: p.StaleAfter.Milliseconds(),
		IntervalMS:   p.Interval.Milliseconds(),
	}
}

// streak is how many result ids a region keeps: enough to name every result of a threshold.
func (p Policy) streak() int { return max(p.Fall, p.Rise, 1) }

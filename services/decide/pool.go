package decide

import (
	"strconv"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// PoolVerdict is a pool's availability given its endpoints' statuses.
type PoolVerdict struct {
	Status events.Status
	// Serving counts the endpoints that may be answered: up, or not yet decided.
	Serving int
	// Need is how many must serve: min_available, at least 1.
	Need  int
	Total int
}

// EvaluatePool decides a pool from its endpoints' recorded statuses, as the DNS server counts
// them: an endpoint serves while it is up or not yet decided; down and drained ones do not.
func EvaluatePool(statuses []events.Status, m config.MinAvailable) PoolVerdict {
	v := PoolVerdict{Total: len(statuses), Need: max(1, m.Need(len(statuses)))}
	for _, s := range statuses {
		if s == events.StatusUp || s == events.StatusUnknown {
			v.Serving++
		}
	}
	v.Status = events.StatusDown
	if v.Serving >= v.Need {
		v.Status = events.StatusUp
	}
	return v
}

// PoolReason is the reason of a pool transition to v.Status. otherAvailable counts the app's
// other pools that are available, so the history says what the app answers when none is left.
func PoolReason(v PoolVerdict, otherAvailable int, whenAllDown string) string {
	s := strconv.Itoa(v.Serving) + " of " + strconv.Itoa(v.Total) + " endpoints serving, need " + strconv.Itoa(v.Need)
	switch {
	case v.Status == events.StatusDown && otherAvailable == 0 && whenAllDown == config.FailClosed:
		s += "; no pool of the app is available: when_all_down fail_closed answers no records"
	case v.Status == events.StatusDown && otherAvailable == 0:
		s += "; no pool of the app is available: when_all_down fail_open answers every address"
	case v.Status == events.StatusUp && otherAvailable == 0:
		s += "; the app has an available pool again"
	}
	return s
}

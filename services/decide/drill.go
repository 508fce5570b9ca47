package decide

import (
	"time"

	"github.com/detourdev/detour/events"
)

// DrillEnded begins the reason of the transition that lifting a drill's simulated failure makes,
// when the endpoint's status changes with it.
const DrillEnded = "drill ended"

// DrillOutlived begins the reason of the transition that re-states an endpoint's status, down to
// down, when a drill's simulated failure made it and the probes keep it once the drill no longer
// does (its own checks failed during the drill): the outage is the probes' from then on, not the
// drill's. It does not begin with DrillEnded, which tells a drill's own undoing.
const DrillOutlived = "down by its own checks as the drill ended"

// SetDrill puts a drill's simulated failure o on the endpoint (nil lifts it), made by the DRILLS
// event cause at at, and reports the change of the effective status, if any. A drill acts as an
// override below the operators' own: probes keep being folded, so lifting it returns the endpoint
// to what they say.
func (e *Endpoint) SetDrill(o *events.Override, cause string, at time.Time, p Policy) (Decision, bool) {
	e.Drill = o
	note := DrillEnded
	if o != nil {
		note = o.Reason
	}
	return e.decide(at, p, cause, note, nil)
}

// RestoreDrill puts back o, the simulated failure of the drill whose transition STATE records
// last on the endpoint, as a decider starting cold reads it: the status is the drill's, and
// the probes keeping it once the drill is lifted re-state it (DrillOutlived).
func (e *Endpoint) RestoreDrill(o *events.Override) {
	e.Drill, e.drillMade = o, true
}

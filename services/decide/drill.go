package decide

import (
	"time"

	"github.com/detourdev/detour/events"
)

// DrillEnded begins the reason of the transition that lifting a drill's simulated failure makes,
// when the endpoint's status changes with it.
const DrillEnded = "drill ended"

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

package replay

import (
	"testing"
	"time"
)

// SetPhaseGrace has the replays of t read the history past a window's end for d, not
// phaseGrace, until t ends.
func SetPhaseGrace(t testing.TB, d time.Duration) {
	old := phaseGrace
	phaseGrace = d
	t.Cleanup(func() { phaseGrace = old })
}

package drill_test

import (
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
)

func TestOnlyADrillsSimulatedFailureReadsAsSimulated(t *testing.T) {
	for _, c := range []struct {
		reason, drill, want string
	}{
		// Marked: the drill is known whatever the reason says.
		{"re-asserted: STATE recorded up against the probes; 1 of 1 voting regions see it up (quorum 0.5)", "d1", "d1"},
		{"STATE was behind the probes; 0 of 1 voting regions see it up (quorum 0.5)", "lose-west", "lose-west"},
		{"drill d1: simulated failure of pool shop/west", "d1", "d1"},
		// Unmarked, as every transition a drill made before the mark: told by its wording.
		{"drill lose-west-0193d2c4a1b27f8: simulated failure of pool shop/us-west", "", "lose-west-0193d2c4a1b27f8"},
		{"drill d1: simulated failure of endpoint shop/west/w1", "", "d1"},
		// Unmarked and worded otherwise: no drill's, whatever it mentions.
		{"drill ended; 1 of 1 voting regions see it up (quorum 0.5)", "", ""},
		{"override force_down by alice@laptop: drill d1: simulated failure of pool x", "", ""},
		{"override force_down by alice@laptop: drill tomorrow", "", ""},
		{"drill d 1: simulated failure of pool shop/west", "", ""},
		{"drill d1: simulated failure of ", "", ""},
		{"eu: 3 consecutive failures (fall 3); 0 of 1 voting regions see it up", "", ""},
	} {
		if got := drill.Of(events.Transition{To: events.StatusDown, Reason: c.reason, Drill: c.drill}); got != c.want {
			t.Errorf("Of(reason %q, drill %q) = %q, want %q", c.reason, c.drill, got, c.want)
		}
	}
}

package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// TestReplayJudgesAFutureFromByTheServersClock: an operator whose machine's clock runs a minute
// behind the servers' pastes the time of a failure the servers stamped seconds ago into --from.
// That time has passed, by the clock of the history: the replay runs. A --from past the servers'
// time is still refused with exit 2.
func TestReplayJudgesAFutureFromByTheServersClock(t *testing.T) {
	srv := eventstest.Start(t)
	clock = func() time.Time { return time.Now().Add(-time.Minute) }
	t.Cleanup(func() { clock = time.Now })
	for _, tc := range []struct {
		from   string
		code   int
		stderr string
	}{
		{time.Now().Add(-5 * time.Second).UTC().Format(time.RFC3339Nano), 0, ""},
		{"2999-01-01T00:00:00Z", 2, "--from 2999-01-01T00:00:00Z is in the future: the history ends at "},
	} {
		var out, errOut bytes.Buffer
		code := Main([]string{"replay", "--nats", srv.URL, "--from", tc.from}, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.stderr) || (tc.stderr == "") != (errOut.Len() == 0) {
			t.Errorf("replay --from %s on a machine a minute behind the servers: exit %d, stderr %q; want %d and %q", tc.from, code, errOut.String(), tc.code, tc.stderr)
		}
	}
}

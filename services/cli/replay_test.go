package cli_test

import (
	"strings"
	"testing"
)

func TestReplayRefusesBadFlagsWithExitStatus2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "pdf"}, `--format: want text, json or html, got "pdf"`},
		{[]string{"--from", "yesterday"}, `--from: want an RFC 3339 time or a duration ago such as 15m, got "yesterday"`},
		{[]string{"--from", "5m", "--to", "10m"}, `--to 10m is before --from 5m`},
		{[]string{"--from", "2026-11-30T19:00:00"}, `--from: "2026-11-30T19:00:00" has no time zone: add Z for UTC or an offset such as +01:00`},
		{[]string{"--to", "2026-11-30 19:00:00Z"}, `--to: want an RFC 3339 time or a duration ago such as 15m, got "2026-11-30 19:00:00Z"`},
		{[]string{"--what-if", "fall=0"}, `--what-if: fall: "0": want 1 to 1000`},
		{[]string{"--what-if", "fal=3"}, `detour replay: --what-if: unknown setting "fal": want fall, rise, quorum, hold_down or stale_after`},
	} {
		code, _, stderr := run(append([]string{"replay", "--nats", "nats://127.0.0.1:1"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("replay %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

package replay_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/replay"
)

// TestATextTimelineKeepsOneEventALineWhateverAReasonHolds: an operator's override reason is
// free text, pasted from notes with line breaks and tabs, or a terminal's escape sequences. The
// text timeline stays one event a line (a second line of a reason is no line of its own that
// `grep transition` finds, nor one that looks like an event), and prints those characters
// escaped instead of handing them to the terminal.
func TestATextTimelineKeepsOneEventALineWhateverAReasonHolds(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	reason := "maintenance\n2026-12-01T10:00:00.000Z  transition  shop/west/w1  up → down: forged\tcolumn \x1b[2J\r"
	o, err := events.New(events.TypeOverrideSet, "api", at,
		events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionForceDown, Reason: reason, By: "ops@host"})
	if err != nil {
		t.Fatal(err)
	}
	tl := replay.Build([]replay.Record{
		{Stream: events.StreamState, Seq: 1, Subject: "detour.state.override.shop.west.w1", Stored: at, Env: o},
	}, replay.Filter{})
	var out bytes.Buffer
	if err := replay.WriteText(&out, tl, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := `force_down by ops@host: maintenance\n2026-12-01T10:00:00.000Z  transition  shop/west/w1  up → down: forged\tcolumn \x1b[2J\r`
	if len(lines) != 2 || !strings.HasSuffix(lines[0], want) || strings.ContainsAny(out.String(), "\t\r\x1b") {
		t.Errorf("one override printed as %d lines, want it on one ending %q, then the count:\n%s", len(lines), want, out.String())
	}
}

package drill_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/services/drill"
)

func TestADurationIsRoundedForPeopleAndNeverShownAsZero(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{300 * time.Nanosecond, "300ns"},
		{6 * time.Microsecond, "6µs"},
		{434*time.Microsecond + 400*time.Nanosecond, "434µs"},
		{23*time.Millisecond + 400*time.Microsecond, "23ms"},
		{1234*time.Millisecond + 600*time.Microsecond, "1.235s"},
		{12*time.Second + 345*time.Millisecond, "12.35s"},
		{2 * time.Second, "2s"},
	} {
		if got := drill.Millis(c.d).String(); got != c.want {
			t.Errorf("Millis(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestTheScorecardShowsASubMillisecondSwitchAsTheReasonDoes(t *testing.T) {
	sc := drill.Scorecard{Drill: "d-1", Name: "d", By: "tester", Pass: true, RolledBack: "completed by tester",
		Steps: []drill.StepScore{{Step: "fail pool shop/west", RTO: drill.Millis(2 * time.Second),
			Switch: drill.Millis(434 * time.Microsecond), Pass: true, Reason: "switched in 434µs, within the rto of 2s"}}}
	var text strings.Builder
	if err := sc.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "2s   434µs   PASS") {
		t.Errorf("the SWITCH column does not show 434µs:\n%s", text.String())
	}
}

package main

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober"
)

func TestACheckIsLaggedFromTheLatestOfItsInstantsAtOrBeforeItsStart(t *testing.T) {
	const interval, jitter = 10 * time.Second, time.Second
	st := &stack{checks: map[string]config.Check{
		"app7/main/e": {Interval: config.Duration(interval), Jitter: config.Duration(jitter)}}}
	r := events.ProbeResult{App: "app7", Pool: "main", Endpoint: "e"}
	n := prober.Window(time.Unix(1764547200, 0), interval)
	due := prober.SlotTime("app7/main/e", interval, jitter, n)
	for _, c := range []struct {
		start time.Time
		want  time.Time
	}{
		{due, due},
		{due.Add(300 * time.Millisecond), due},
		{due.Add(-time.Nanosecond), prober.SlotTime("app7/main/e", interval, jitter, n-1)},
	} {
		if got, ok := st.instant(r, c.start); !ok || !got.Equal(c.want) {
			t.Errorf("a check started %s after its instant: instant %s (%v), want %s", c.start.Sub(due), got.Sub(due), ok, c.want.Sub(due))
		}
	}
	if _, ok := st.instant(events.ProbeResult{App: "app8", Pool: "main", Endpoint: "e"}, due); ok {
		t.Error("a check the configuration lacks has an instant")
	}
}

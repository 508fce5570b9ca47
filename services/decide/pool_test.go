package decide

import (
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

func TestAPoolIsAvailableWhileEnoughEndpointsServe(t *testing.T) {
	const u, d, x, q = events.StatusUp, events.StatusDown, events.StatusDrained, events.StatusUnknown
	tests := []struct {
		name     string
		statuses []events.Status
		min      config.MinAvailable
		want     PoolVerdict
	}{
		{"one up endpoint of one makes the pool available", []events.Status{u}, config.MinAvailable{Count: 1},
			PoolVerdict{Status: u, Serving: 1, Need: 1, Total: 1}},
		{"an undecided endpoint serves as the DNS server answers it", []events.Status{q}, config.MinAvailable{Count: 1},
			PoolVerdict{Status: u, Serving: 1, Need: 1, Total: 1}},
		{"down and drained endpoints do not serve", []events.Status{d, x, u}, config.MinAvailable{Count: 2},
			PoolVerdict{Status: d, Serving: 1, Need: 2, Total: 3}},
		{"a share rounds up", []events.Status{u, u, d}, config.MinAvailable{Percent: 75},
			PoolVerdict{Status: d, Serving: 2, Need: 3, Total: 3}},
		{"a share of half is met by half", []events.Status{u, d}, config.MinAvailable{Percent: 50},
			PoolVerdict{Status: u, Serving: 1, Need: 1, Total: 2}},
		{"at least one endpoint is always needed", []events.Status{d, d}, config.MinAvailable{Percent: 1},
			PoolVerdict{Status: d, Serving: 0, Need: 1, Total: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EvaluatePool(tt.statuses, tt.min); got != tt.want {
				t.Errorf("EvaluatePool(%v, %v) = %+v, want %+v", tt.statuses, tt.min, got, tt.want)
			}
		})
	}
}

func TestPoolReasonSaysWhatTheAppAnswersWhenNoPoolIsLeft(t *testing.T) {
	down := PoolVerdict{Status: events.StatusDown, Serving: 0, Need: 1, Total: 2}
	up := PoolVerdict{Status: events.StatusUp, Serving: 1, Need: 1, Total: 2}
	tests := []struct {
		name        string
		v           PoolVerdict
		others      int
		whenAllDown string
		want        string
	}{
		{"another pool still answers", down, 1, config.FailOpen, "0 of 2 endpoints serving, need 1"},
		{"fail open answers every address", down, 0, config.FailOpen,
			"0 of 2 endpoints serving, need 1; no pool of the app is available: when_all_down fail_open answers every address"},
		{"fail closed answers no records", down, 0, config.FailClosed,
			"0 of 2 endpoints serving, need 1; no pool of the app is available: when_all_down fail_closed answers no records"},
		{"the first pool back ends the outage", up, 0, config.FailClosed,
			"1 of 2 endpoints serving, need 1; the app has an available pool again"},
		{"a pool back beside another says only its count", up, 1, config.FailOpen, "1 of 2 endpoints serving, need 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PoolReason(tt.v, tt.others, tt.whenAllDown); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

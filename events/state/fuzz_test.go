package state_test

import (
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/state"
)

// FuzzCheckNeverPanics feeds Check whatever a client could store on a STATE subject.
func FuzzCheckNeverPanics(f *testing.F) {
	f.Add("detour.state.endpoint.shop.west.w1", "up", true, []byte(`{"type":"detour.endpoint.down.v1","id":"x","time":"2026-01-01T00:00:00Z","source":"s","data":{"app":"shop","pool":"west","endpoint":"w1","from":"up","to":"down"}}`))
	f.Add("detour.state.edge.e", "", false, []byte(`{"type":"detour.edge.up.v1","id":"x","time":"2026-01-01T00:00:00Z","data":[1]}`))
	f.Add("detour.state.override.a.b._pool", "", false, []byte(`{"type":"detour.override.set.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}}`))
	f.Fuzz(func(t *testing.T, subject, prev string, hasPrev bool, data []byte) {
		e, err := events.Decode(data)
		if err != nil {
			return
		}
		v := state.NewView()
		why := state.Check(subject, events.Status(prev), hasPrev, e)
		if why == "" && !hasPrev {
			if _, err := v.Apply(subject, 1, e); err != nil {
				t.Errorf("Check accepted an event the view cannot apply: %v", err)
			}
		}
	})
}

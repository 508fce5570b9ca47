package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// FuzzFoldDrill: any DRILLS events, forged or malformed, fold without a crash into drills that
// are named by their subject, in a known state, with failures only while in force.
func FuzzFoldDrill(f *testing.F) {
	f.Add("d1", 0, []byte(`{"id":"d1","name":"n","apps":["shop"],"steps":2}`), "d1", 1, []byte(`{"index":0,"step":"pool shop/west","failures":[{"kind":"pool","app":"shop","pool":"west"}]}`))
	f.Add("d1", 0, []byte(`{"id":"d1"}`), "d1", 3, []byte(`{"pass":"yes"}`))
	f.Add("a.b", 2, []byte(`[]`), "", 4, []byte(`null`))
	types := []string{events.TypeDrillStarted, events.TypeDrillStepStarted, events.TypeDrillRolledBack, events.TypeDrillScored, "x"}
	f.Fuzz(func(t *testing.T, id1 string, t1 int, p1 []byte, id2 string, t2 int, p2 []byte) {
		byID := map[string]*Drill{}
		for i, ev := range []struct {
			id  string
			typ int
			p   []byte
		}{{id1, t1, p1}, {id2, t2, p2}} {
			e := events.Envelope{ID: "e", Type: types[uint(ev.typ)%uint(len(types))], Time: time.Unix(0, 0), Data: json.RawMessage(ev.p)}
			foldDrill(byID, "detour.drill."+ev.id, uint64(i+1), time.Unix(0, 0), e)
		}
		for id, d := range byID {
			if d.ID != id || d.Failures == nil {
				t.Fatalf("drill %q folded as %+v", id, d)
			}
			switch d.State {
			case DrillInForce:
			case DrillRolledBack, DrillScored:
				if len(d.Failures) != 0 {
					t.Fatalf("drill %q ended with failures in force: %+v", id, d)
				}
			default:
				t.Fatalf("drill %q in state %q", id, d.State)
			}
		}
	})
}

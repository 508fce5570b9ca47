package alert

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// FuzzDrillEvents: any DRILLS event, forged or malformed, is classified without a crash, and a
// drill_result is only ever about the drill its subject names, with a body that encodes.
func FuzzDrillEvents(f *testing.F) {
	f.Add("d1", 0, []byte(`{"id":"d1","name":"n","apps":["shop"],"steps":2}`), "d1", 3, []byte(`{"pass":true,"steps":[{"step":"pool shop/west","pass":true}]}`))
	f.Add("d1", 0, []byte(`{"id":"d2"}`), "d1", 2, []byte(`{"by":"c","reason":"runner_lost"}`))
	f.Add("a.b", 3, []byte(`{"steps":"no"}`), "", 1, []byte(`null`))
	types := []string{events.TypeDrillStarted, events.TypeDrillStepStarted, events.TypeDrillRolledBack, events.TypeDrillScored, "x"}
	group := &config.Alert{Name: "g", On: []string{config.AlertDrillResult}, Apps: []string{"shop"}}
	f.Fuzz(func(t *testing.T, id1 string, t1 int, p1 []byte, id2 string, t2 int, p2 []byte) {
		d := drills{}
		for _, ev := range []struct {
			id  string
			typ int
			p   []byte
		}{{id1, t1, p1}, {id2, t2, p2}} {
			e := events.Envelope{ID: "e", Type: types[uint(ev.typ)%uint(len(types))], Time: time.Unix(0, 0), Data: json.RawMessage(ev.p)}
			subject := "detour.drill." + ev.id
			fact, ok := d.Classify(subject, e)
			if !ok {
				continue
			}
			if fact.Drill == nil || "detour.drill."+fact.Drill.ID != subject {
				t.Fatalf("a drill_result about %+v from %s", fact.Drill, subject)
			}
			Matches(group, fact)
			if _, err := Body(group, config.Webhook{}, config.AlertDrillResult, fact); err != nil {
				t.Fatalf("body: %v", err)
			}
		}
	})
}

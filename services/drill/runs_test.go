package drill_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
)

// The drills GET /v1/drills lists, as JSON, for sequences of DRILLS events: in order, out of
// order, twice, malformed, forged. Each event is stored one second after the one before, from
// 12:00:01; its runner's clock agrees with the stream's.
func TestTheDrillsListedFollowFromTheirEventsWhateverTheirOrderOrShape(t *testing.T) {
	type event struct{ subject, typ, data string }
	start := func(id, name string) event {
		return event{id, events.TypeDrillStarted, `{"id":"` + id + `","name":"` + name + `","by":"ops","apps":["shop"],"steps":2,"rollback_at":"2026-12-05T13:00:00Z","lease_ms":3000}`}
	}
	step := func(id, pool string) event {
		return event{id, events.TypeDrillStepStarted, `{"index":0,"step":"pool shop/` + pool + `","failures":[{"kind":"pool","app":"shop","pool":"` + pool + `"}]}`}
	}
	rolledBack := func(id, reason string) event {
		return event{id, events.TypeDrillRolledBack, `{"by":"ops","reason":"` + reason + `"}`}
	}
	scored := func(id string, pass bool) event {
		return event{id, events.TypeDrillScored, fmt.Sprintf(`{"drill":%q,"pass":%t}`, id, pass)}
	}
	renewed := func(id string) event { return event{id, events.TypeDrillRenewed, `{"by":"ops"}`} }
	// run is a drill's listing, started by the event stored at 12:00:0<sec>.
	run := func(id, name string, sec int, rest string) string {
		return fmt.Sprintf(`{"id":%q,"name":%q,"by":"ops","apps":["shop"],"steps":2,"started":"2026-12-05T12:00:0%dZ","rollback_at":"2026-12-05T13:00:00Z",%s}`,
			id, name, sec, rest)
	}
	const westFailed = `"step":"pool shop/west","failures":[{"kind":"pool","app":"shop","pool":"west"}]`
	for _, c := range []struct {
		name   string
		events []event
		want   string
	}{
		{"nothing", nil, `[]`},
		{"a drill started is in force with no step yet", []event{start("d1", "west")},
			`[` + run("d1", "west", 1, `"state":"in_force","failures":[]`) + `]`},
		{"a drill is in force at its last step, renewals or not", []event{start("d1", "west"), step("d1", "east"), renewed("d1"), step("d1", "west"), renewed("d1")},
			`[` + run("d1", "west", 1, `"state":"in_force",`+westFailed) + `]`},
		{"a drill rolled back keeps its last step with no failure, and why and by whom", []event{start("d1", "west"), step("d1", "west"), rolledBack("d1", "completed")},
			`[` + run("d1", "west", 1, `"state":"rolled_back","step":"pool shop/west","failures":[],"rolled_back":"completed by ops"`) + `]`},
		{"a drill scored shows its verdict, the runner's late renewal changing nothing", []event{start("d1", "west"), step("d1", "west"), rolledBack("d1", "completed"), renewed("d1"), scored("d1", true)},
			`[` + run("d1", "west", 1, `"state":"scored","step":"pool shop/west","failures":[],"rolled_back":"completed by ops","pass":true`) + `]`},
		{"a step or a second rollback after the rollback changes nothing", []event{start("d1", "west"), step("d1", "west"), rolledBack("d1", "requested"), step("d1", "east"), rolledBack("d1", "max_duration")},
			`[` + run("d1", "west", 1, `"state":"rolled_back","step":"pool shop/west","failures":[],"rolled_back":"requested by ops"`) + `]`},
		{"a scorecard stored before the rollback is the verdict, the rollback then changing nothing", []event{start("d1", "west"), scored("d1", false), rolledBack("d1", "completed"), step("d1", "west")},
			`[` + run("d1", "west", 1, `"state":"scored","failures":[],"pass":false`) + `]`},
		{"the later of two scorecards is the verdict", []event{start("d1", "west"), rolledBack("d1", "completed"), scored("d1", false), scored("d1", true)},
			`[` + run("d1", "west", 1, `"state":"scored","failures":[],"rolled_back":"completed by ops","pass":true`) + `]`},
		{"a second start of a drill keeps the first", []event{start("d1", "west"), start("d1", "other")},
			`[` + run("d1", "west", 1, `"state":"in_force","failures":[]`) + `]`},
		{"a step before the drill's start is not its step", []event{step("d1", "west"), start("d1", "west")},
			`[` + run("d1", "west", 2, `"state":"in_force","failures":[]`) + `]`},
		{"events of a drill never started list nothing", []event{step("d9", "west"), renewed("d9"), rolledBack("d9", "requested"), scored("d9", true)}, `[]`},
		{"a rollback stored before the start (forged) ends the drill before it is listed, as the controllers fold it", []event{rolledBack("d1", "requested"), start("d1", "west"), step("d1", "west")}, `[]`},
		{"a start naming another drill than its subject's is not a start", []event{{"d1", events.TypeDrillStarted, `{"id":"d2","name":"west","apps":["shop"]}`}}, `[]`},
		{"a start that does not decode is skipped, the next one counts", []event{{"d1", events.TypeDrillStarted, `[]`}, start("d1", "west")},
			`[` + run("d1", "west", 2, `"state":"in_force","failures":[]`) + `]`},
		{"a step that does not decode is skipped", []event{start("d1", "west"), step("d1", "west"), {"d1", events.TypeDrillStepStarted, `{"failures":"all"}`}},
			`[` + run("d1", "west", 1, `"state":"in_force",`+westFailed) + `]`},
		{"a rollback that does not decode still ends the drill, as the controllers fold it, with no reason", []event{start("d1", "west"), step("d1", "west"), {"d1", events.TypeDrillRolledBack, `"now"`}},
			`[` + run("d1", "west", 1, `"state":"rolled_back","step":"pool shop/west","failures":[]`) + `]`},
		{"a scorecard that does not decode leaves the drill as it was", []event{start("d1", "west"), rolledBack("d1", "completed"), {"d1", events.TypeDrillScored, `{"pass":"yes"}`}},
			`[` + run("d1", "west", 1, `"state":"rolled_back","failures":[],"rolled_back":"completed by ops"`) + `]`},
		{"an event of an unknown type, a claim and a subject of two tokens are skipped", []event{start("d1", "west"), {"d1", "detour.drill.exploded.v1", `{}`},
			{"claim.shop", events.TypeDrillClaimed, `{"app":"shop","id":"d1"}`}, {"d1.x", events.TypeDrillStarted, `{"id":"d1.x"}`}},
			`[` + run("d1", "west", 1, `"state":"in_force","failures":[]`) + `]`},
		{"the drills in force come first, then the others, the latest started first", []event{start("d1", "a"), start("d2", "b"), start("d3", "c"),
			rolledBack("d1", "completed"), rolledBack("d3", "completed"), scored("d1", true), start("d4", "d")},
			`[` + run("d4", "d", 7, `"state":"in_force","failures":[]`) + `,` + run("d2", "b", 2, `"state":"in_force","failures":[]`) + `,` +
				run("d3", "c", 3, `"state":"rolled_back","failures":[],"rolled_back":"completed by ops"`) + `,` +
				run("d1", "a", 1, `"state":"scored","failures":[],"rolled_back":"completed by ops","pass":true`) + `]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := drill.NewView()
			for i, e := range c.events {
				seq := uint64(i + 1)
				stored := time.Date(2026, 12, 5, 12, 0, int(seq), 0, time.UTC)
				env := events.Envelope{ID: fmt.Sprint("e", seq), Type: e.typ, Time: stored, Data: json.RawMessage(e.data)}
				_, _ = v.Apply("detour.drill."+e.subject, seq, stored, env)
			}
			got, err := json.Marshal(v.Runs(50))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("listed\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

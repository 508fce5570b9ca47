package alert

import (
	"testing"

	"github.com/detourdev/detour/events"
)

// A controller that took a configuration version while it ran vouches, under the new groups,
// only for the events it dispatched for them: an event dispatched for the groups before was not
// tried for a webhook the version added, which another controller holding it already may owe.
// Its own marks tell it, after a restart, up to where it tried whatever its groups were.
func TestAMarkVouchesToAnotherControllerOnlyForTheEventsDispatchedForItsGroups(t *testing.T) {
	var tr tried
	tr.add(1, "e1", 0, "before")
	tr.add(2, "e2", 0, "after")
	m := tr.mark("after")
	if m.through != "e2" || m.since != "e2" {
		t.Fatalf("mark through %q since %q, want e2 and e2", m.through, m.since)
	}
	m.by = "controller-1"
	b := backlog{{fact: Fact{Event: events.Envelope{ID: "e1"}}, seq: 1}, {fact: Fact{Event: events.Envelope{ID: "e2"}}, seq: 2},
		{fact: Fact{Event: events.Envelope{ID: "e3"}}, seq: 3}}
	for _, c := range []struct {
		name, set, by string
		want          string // for e1, e2, e3: v vouched, - not
	}{
		{"another controller with the same groups", "after", "controller-2", "-v-"},
		{"another controller with other groups", "other", "controller-2", "---"},
		{"the controller itself, restarted with other groups", "other", "controller-1", "vv-"},
	} {
		v := vouchedFor(map[mark]bool{m: true}, b, c.set, c.by)
		got := ""
		for seq := uint64(1); seq <= 3; seq++ {
			got += map[bool]string{true: "v", false: "-"}[v.covers(seq)]
		}
		if got != c.want {
			t.Errorf("%s: vouched %s, want %s", c.name, got, c.want)
		}
	}
}

// A controller that took a version while the events before it still wait for their first
// attempts vouches for none: the last event tried was dispatched for the groups before.
func TestAMarkVouchesForNothingWhileTheEventsTriedWereDispatchedForTheGroupsBefore(t *testing.T) {
	var tr tried
	tr.add(1, "e1", 0, "before")
	tr.add(2, "e2", 1, "after")
	if m := tr.mark("after"); m.through != "e1" || m.since != "" {
		t.Errorf("mark through %q since %q, want e1 and none", m.through, m.since)
	}
}

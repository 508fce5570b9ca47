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

// A controller that takes a version after its start, before ALERTS told it what was owed from
// before (ALERTS slow to answer), dispatched the events of that while for the groups before;
// the owed events dispatched after the version come before them in the stream. Its marks must
// not vouch for those events under the new groups: another controller holding the version, and
// restarted, would skip them for the webhook the version added, which was never sent them.
func TestAMarkVouchesForNoEventDispatchedForTheGroupsBeforeThoughOwedEventsBeforeItComeAfter(t *testing.T) {
	tr := tried{held: true}
	tr.add(100, "e100", 0, "before") // alerted at once, while what is owed waits for ALERTS
	tr.add(101, "e101", 0, "after")  // a version came
	tr.vouchAfter(0)                 // ALERTS answered: e50 is owed (resume)
	tr.add(50, "e50", 0, "after")
	tr.release()
	m := tr.mark("after")
	m.by = "controller-1"
	b := backlog{{fact: Fact{Event: events.Envelope{ID: "e50"}}, seq: 50}, {fact: Fact{Event: events.Envelope{ID: "e100"}}, seq: 100},
		{fact: Fact{Event: events.Envelope{ID: "e101"}}, seq: 101}}
	if v := vouchedFor(map[mark]bool{m: true}, b, "after", "controller-2"); v.covers(100) {
		t.Errorf("the mark (through %s since %s) vouches, to a controller with the new groups, for e100, dispatched for the groups before", m.through, m.since)
	}
}

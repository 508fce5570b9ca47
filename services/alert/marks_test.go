package alert_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// Two controllers whose alert groups differ (one took a configuration version the other has
// not yet, or a rolling upgrade starts them with different files): one's attempts tell of a
// transition as tried for its own webhooks only, so the other, restarted, sends it to its own.
// They told of it as tried for every webhook: the restarted controller went on past it, and its
// webhook never heard of the pool's recovery.
func TestAControllerRestartedBesideOneWithOtherGroupsSendsWhatTheOtherToldOnlyItsOwnWebhooks(t *testing.T) {
	pages, oncall := &receiver{}, &receiver{}
	pagesHook, oncallHook := serve(t, pages), serve(t, oncall)
	ns := eventstest.Start(t)
	pagesOnly := version(t, 2, group("pages", pagesHook.URL, ""))
	stop := startReplica(t, ns, pagesOnly, "controller-2", &eventstest.Logs{})
	startReplica(t, ns, version(t, 1, group("oncall", oncallHook.URL, "")), "controller-1", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "pages", 1)
	waitAttempt(t, ns, "oncall", 1)
	stop()

	up := westGoes(t, ns.JS, events.StatusDown, events.StatusUp) // while controller-2 is stopped
	eventstest.Eventually(t, 5*time.Second, func() bool {
		a := stored(t, ns, "oncall")
		return len(a) == 2 && a[1].Tried == up.ID
	}, "controller-1 to record the up as tried for its webhook")

	logs := &eventstest.Logs{}
	startReplica(t, ns, pagesOnly, "controller-2", logs)
	owed(t, logs, `"new":1,"resumed":0,"skipped":1`)
	eventstest.Eventually(t, 5*time.Second, func() bool { return pages.delivered() == 2 }, "the pool's recovery delivered to pages after controller-2's restart")
	pages.quiet(t, 300*time.Millisecond, 5*time.Second, "pages to be told nothing more")
	if n, m := pages.count(), oncall.count(); n != 2 || m != 2 {
		t.Errorf("pages got %d requests and oncall %d, want 2 each: the down and the up once", n, m)
	}
}

// The drill_result twin of the test above.
func TestAControllerRestartedBesideOneWithOtherGroupsSendsTheDrillResultTheOtherToldOnlyItsOwnWebhooks(t *testing.T) {
	pages, oncall := &receiver{}, &receiver{}
	pagesHook, oncallHook := serve(t, pages), serve(t, oncall)
	ns := eventstest.Start(t)
	pagesOnly := version(t, 2, fmt.Sprintf("  - {name: pages, on: [drill_result], webhooks: [{url: %q}]}\n", pagesHook.URL))
	stop := startReplica(t, ns, pagesOnly, "controller-2", &eventstest.Logs{})
	startReplica(t, ns, version(t, 1, fmt.Sprintf("  - {name: oncall, on: [drill_result], webhooks: [{url: %q}]}\n", oncallHook.URL)), "controller-1", &eventstest.Logs{})
	following(t, ns, events.StreamDrills, 2)
	drillEnds(t, ns.JS, "d1")
	waitAttempt(t, ns, "pages", 1)
	waitAttempt(t, ns, "oncall", 1)
	stop()

	drillEnds(t, ns.JS, "d2") // while controller-2 is stopped
	last, err := ns.Stream(t, events.StreamDrills).GetLastMsgForSubject(context.Background(), events.DrillSubject("d2"))
	if err != nil {
		t.Fatal(err)
	}
	ended, err := events.Decode(last.Data)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		a := stored(t, ns, "oncall")
		return len(a) == 2 && a[1].TriedDrills == ended.ID
	}, "controller-1 to record d2's end as tried for its webhook")

	logs := &eventstest.Logs{}
	startReplica(t, ns, pagesOnly, "controller-2", logs)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the restarted controller to dispatch the drill results owed")
	if !strings.Contains(logs.String(), `"new":1,"resumed":0,"events":2`) {
		t.Errorf("the restarted controller logged %q without d2 owed:\n%s", drillsOwedDispatched, logs)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return pages.delivered() == 2 }, "d2's result delivered to pages after controller-2's restart")
	pages.quiet(t, 300*time.Millisecond, 5*time.Second, "pages to be told nothing more")
	if n, m := pages.count(), oncall.count(); n != 2 || m != 2 {
		t.Errorf("pages got %d requests and oncall %d, want 2 each: each drill's result once", n, m)
	}
}

// A version renames a group (oncall → pager, the same webhook) while controller-1 is stopped;
// controller-2 sent the pool's recovery under the old name. controller-1, restarted with the
// version, has no mark of its groups for the recovery, but the webhook had it: it is not sent
// again, under another Detour-Delivery id the receiver could not tell a repeat by. Since marks
// named their groups, it was, and the receiver paged twice for one recovery.
func TestAGroupRenamedWhileAControllerWasStoppedIsNotSentAgainWhatItsWebhookHadUnderTheOldName(t *testing.T) {
	upSentBeforeTheVersion(t, func(hook string) *config.Config { return version(t, 2, group("pager", hook, "")) })
}

// The drill_result twin of the test above.
func TestAGroupRenamedWhileAControllerWasStoppedIsNotSentAgainTheDrillResultItsWebhookHad(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	drillGroup := func(name string) string {
		return fmt.Sprintf("  - {name: %s, on: [drill_result], webhooks: [{url: %q}]}\n", name, hook.URL)
	}
	oncall := version(t, 1, drillGroup("oncall"))
	stop1 := startReplica(t, ns, oncall, "controller-1", &eventstest.Logs{})
	stop2 := startReplica(t, ns, oncall, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamDrills, 2)
	drillEnds(t, ns.JS, "d1")
	waitAttempt(t, ns, "oncall", 1)
	stop1()

	drillEnds(t, ns.JS, "d2") // while controller-1 is stopped
	waitAttempt(t, ns, "oncall", 2)
	stop2()

	logs := &eventstest.Logs{}
	startReplica(t, ns, version(t, 2, drillGroup("pager")), "controller-1", logs)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the restarted controller to dispatch the drill results owed")
	if !strings.Contains(logs.String(), `"new":0,"resumed":0,"events":2`) {
		t.Errorf("the restarted controller logged %q with d2 owed:\n%s", drillsOwedDispatched, logs)
	}
	rc.quiet(t, 300*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 2 {
		t.Errorf("the webhook got %d requests, want 2: each drill's result once", n)
	}
}

// A version moves the transitions from one group to another at the same webhook (oncall keeps
// it for drill results, pager is told the transitions) while controller-1 is stopped;
// controller-2 sent the pool's recovery under oncall. controller-1, restarted with the version,
// sends oncall's webhook the drill results still, but the webhook had the recovery: it is not
// sent again under pager, with another Detour-Delivery id the receiver could not tell a repeat
// by.
func TestATransitionMovedToAnotherGroupAtTheSameWebhookWhileAControllerWasStoppedIsNotSentAgain(t *testing.T) {
	upSentBeforeTheVersion(t, func(hook string) *config.Config {
		return version(t, 2, fmt.Sprintf("  - {name: oncall, on: [drill_result], webhooks: [{url: %q}]}\n", hook), group("pager", hook, ""))
	})
}

// upSentBeforeTheVersion has controller-2 send a webhook, under the group oncall, the pool's up
// while controller-1 is stopped, then restarts controller-1 with the version versionAt makes
// of the webhook's URL, and checks that the webhook was told the down and the up once each.
func upSentBeforeTheVersion(t *testing.T, versionAt func(hook string) *config.Config) {
	t.Helper()
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	oncall := version(t, 1, group("oncall", hook.URL, ""))
	stop1 := startReplica(t, ns, oncall, "controller-1", &eventstest.Logs{})
	stop2 := startReplica(t, ns, oncall, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 1)
	stop1()

	up := westGoes(t, ns.JS, events.StatusDown, events.StatusUp) // while controller-1 is stopped
	eventstest.Eventually(t, 5*time.Second, func() bool {
		a := stored(t, ns, "oncall")
		return len(a) == 2 && a[1].Tried == up.ID
	}, "controller-2 to record the up as tried")
	stop2()

	logs := &eventstest.Logs{}
	startReplica(t, ns, versionAt(hook.URL), "controller-1", logs)
	owed(t, logs, `"new":0,"resumed":0,"skipped":2`)
	rc.quiet(t, 300*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 2 {
		t.Errorf("the webhook got %d requests, want 2: the down and the up once", n)
	}
}

package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// owedDispatched is what a sender logs once it has dispatched what was owed from before it
// started.
const owedDispatched = "alerts owed from before the start dispatched"

// startSender runs an alert sender named controller-1 with c's groups and the clock now,
// logging to logs as well as to the test, until the returned stop.
func startSender(t *testing.T, ns *eventstest.Server, c *config.Config, logs *eventstest.Logs, now func() time.Time) (stop func()) {
	t.Helper()
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t)))
	return eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: c, Name: "controller-1", Now: now,
			Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Log: log})
	})
}

// owed waits until the sender logged that it dispatched what was owed from before its start,
// counted as want says ("new":1,"resumed":0,"skipped":0).
func owed(t *testing.T, logs *eventstest.Logs, want string) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(owedDispatched) > 0 }, "the sender to log %q", owedDispatched)
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("the sender logged %q without %s:\n%s", owedDispatched, want, logs)
	}
}

// stored returns the attempts ALERTS holds for group, in order.
func stored(t *testing.T, ns *eventstest.Server, group string) []events.AlertAttempt {
	t.Helper()
	alerts := ns.Stream(t, events.StreamAlerts)
	var out []events.AlertAttempt
	for seq := uint64(1); ; seq++ {
		m, err := alerts.GetMsg(context.Background(), seq)
		if err != nil {
			return out
		}
		var a events.AlertAttempt
		e, err := events.Decode(m.Data)
		if err != nil || e.Payload(&a) != nil {
			t.Fatalf("ALERTS holds %s", m.Data)
		}
		if e.Type == events.TypeAlertAttempted && a.Alert == group {
			out = append(out, a)
		}
	}
}

func TestATransitionAppendedWhileNoSenderRanIsDeliveredOnceOneStarts(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)

	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), &eventstest.Logs{}, time.Now)
	rc.waitAccepted(t, 5*time.Second, "the transition appended before the sender started, delivered")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var p alert.Payload
	if err := json.Unmarshal(rc.accepted[0], &p); err != nil || p.EventID != down.ID || rc.headers[0].Get(alert.HeaderAttempt) != "1" {
		t.Errorf("delivered %s (attempt %s), want attempt 1 about %s", rc.accepted[0], rc.headers[0].Get(alert.HeaderAttempt), down.ID)
	}
}

func TestADeliveryFailingWhenTheSenderStopsIsResumedAfterARestartWithItsIDAndTheNextAttempt(t *testing.T) {
	rc := &receiver{fails: 1 << 30} // it refuses until the test lets it accept
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	stop := startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	followsSTATE(t, ns, 5*time.Second, "")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 2)
	stop()

	before := stored(t, ns, "oncall")
	last := before[len(before)-1]
	if last.Result != events.AlertFailed {
		t.Fatalf("the last attempt stored before the restart is %+v, want failed", last)
	}
	// The sender may have stopped while making the next attempt, claimed and not recorded: the
	// restarted one makes the one after it.
	next := last.Attempt + 1
	for _, c := range claims(t, ns, "oncall") {
		var a events.AlertClaim
		if c.Payload(&a) == nil && a.Attempt >= next {
			next = a.Attempt + 1
		}
	}
	rc.mu.Lock()
	rc.fails = rc.requests // it accepts from now on
	rc.mu.Unlock()

	logs := &eventstest.Logs{}
	startSender(t, ns, c, logs, time.Now)
	rc.waitAccepted(t, 5*time.Second, "the failing delivery resumed after the restart")
	owed(t, logs, `"new":0,"resumed":1,"skipped":0`)
	rc.mu.Lock()
	h := rc.headers[0]
	rc.mu.Unlock()
	if h.Get(alert.HeaderDelivery) != last.Delivery || h.Get(alert.HeaderAttempt) != strconv.Itoa(next) {
		t.Errorf("resumed as delivery %s attempt %s, want delivery %s attempt %d",
			h.Get(alert.HeaderDelivery), h.Get(alert.HeaderAttempt), last.Delivery, next)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		after := stored(t, ns, "oncall")
		a := after[len(after)-1]
		return a.Result == events.AlertDelivered && a.Attempt == next && a.Delivery == last.Delivery
	}, "attempt %d of %s stored as delivered", next, last.Delivery)
}

func TestASenderThatStartsSendsNothingAppendedLongerAgoThanItsGroupsRetryFor(t *testing.T) {
	long, short := &receiver{}, &receiver{}
	longHook, shortHook := serve(t, long), serve(t, short)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	stamp := storedAt(t, ns, down.ID)
	eventstest.Eventually(t, 5*time.Second, func() bool { return time.Since(stamp) > time.Second },
		"the transition to be stored longer ago than the short group's retry_for (1s)")

	// The sender's clock is an hour behind the NATS server's, which stamped the transition:
	// it measures the transition's age by the stream's clock all the same.
	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1,
		fmt.Sprintf("  - {name: long, on: [transition], retry_for: 10m, webhooks: [{url: %q}]}\n", longHook.URL),
		fmt.Sprintf("  - {name: short, on: [transition], retry_for: 1s, webhooks: [{url: %q}]}\n", shortHook.URL)),
		logs, func() time.Time { return time.Now().Add(-time.Hour) })
	long.waitAccepted(t, 5*time.Second, "the group whose retry_for (10m) has not run out told")
	owed(t, logs, `"new":1,"resumed":0,"skipped":0`)
	if n := short.count(); n != 0 {
		t.Errorf("the group whose retry_for (1s) ran out before the start got %d requests, want none", n)
	}
}

func TestASenderRestartedAfterAnAlertWasDeliveredSendsItNoMore(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	stop := startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	followsSTATE(t, ns, 5*time.Second, "")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 1)
	stop()

	logs := &eventstest.Logs{}
	startSender(t, ns, c, logs, time.Now)
	owed(t, logs, `"new":0,"resumed":0,"skipped":1`)
	if n := rc.count(); n != 1 {
		t.Errorf("the receiver got %d requests, want the one before the restart", n)
	}
}

func TestAWebhookAddedToAGroupBeforeARestartIsNotSentWhatTheGroupWasToldBefore(t *testing.T) {
	first, added := &receiver{}, &receiver{}
	firstHook, addedHook := serve(t, first), serve(t, added)
	ns := eventstest.Start(t)
	stop := startSender(t, ns, version(t, 1, group("oncall", firstHook.URL, "")), &eventstest.Logs{}, time.Now)
	followsSTATE(t, ns, 5*time.Second, "")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 1)
	stop()

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 2, fmt.Sprintf("  - {name: oncall, on: [transition], webhooks: [{url: %q}, {url: %q}]}\n",
		firstHook.URL, addedHook.URL)), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":0,"skipped":2`)
	if n, m := first.count(), added.count(); n != 1 || m != 0 {
		t.Errorf("the first webhook got %d requests and the one added %d, want 1 and none", n, m)
	}
}

// readLate reaches ALERTS to publish at once, and to read only once read is closed: a sender
// started on a loaded machine, or while ALERTS elects a leader, reads it seconds after STATE.
type readLate struct {
	jetstream.JetStream
	read chan struct{}
}

func (l readLate) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == events.StreamAlerts {
		select {
		case <-l.read:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.JetStream.Stream(ctx, name)
}

// startReadingLate runs an alert sender named controller-1 with c's groups, logging to logs as
// well as to the test, that reads ALERTS once the returned read is closed, until the returned
// stop.
func startReadingLate(t *testing.T, ns *eventstest.Server, c *config.Config, logs *eventstest.Logs) (read chan struct{}, stop func()) {
	t.Helper()
	js := readLate{JetStream: ns.JS, read: make(chan struct{})}
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t)))
	return js.read, eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: js, Config: c, Name: "controller-1", Log: log})
	})
}

// A transition alerted before the sender had read ALERTS at its start, when nothing was owed
// from before it, is told of as tried by its own attempt's record: the sender held what its
// records tell until it dispatched what was owed, and recorded the attempt as telling of no
// event, so that a webhook added at the next restart was sent the transition again.
func TestAWebhookAddedAtARestartIsNotSentWhatTheGroupWasToldBeforeTheSenderReadALERTS(t *testing.T) {
	first, added := &receiver{}, &receiver{}
	firstHook, addedHook := serve(t, first), serve(t, added)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	read, stop := startReadingLate(t, ns, version(t, 1, group("oncall", firstHook.URL, "")), logs)
	eventstest.Eventually(t, 5*time.Second, func() bool { return caughtUp(logs, events.StreamState) }, "the sender to catch up with STATE")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 1)
	close(read)
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(owedDispatched) == 1 }, "the sender to read ALERTS and dispatch what was owed")
	stop()

	logs = &eventstest.Logs{}
	startSender(t, ns, version(t, 2, fmt.Sprintf("  - {name: oncall, on: [transition], webhooks: [{url: %q}, {url: %q}]}\n",
		firstHook.URL, addedHook.URL)), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":0,"skipped":2`)
	if n, m := first.count(), added.count(); n != 1 || m != 0 {
		t.Errorf("the first webhook got %d requests and the one added %d, want 1 and none", n, m)
	}
}

// The drill_result twin of the test above.
func TestAWebhookAddedAtARestartIsNotSentTheDrillResultsTheGroupWasToldBeforeTheSenderReadALERTS(t *testing.T) {
	first, added := &receiver{}, &receiver{}
	firstHook, addedHook := serve(t, first), serve(t, added)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	read, stop := startReadingLate(t, ns, version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", firstHook.URL)), logs)
	eventstest.Eventually(t, 5*time.Second, func() bool { return caughtUp(logs, events.StreamDrills) }, "the sender to catch up with DRILLS")
	drillEnds(t, ns.JS, "d1")
	waitAttempt(t, ns, "drills", 1)
	close(read)
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the sender to read ALERTS and dispatch the drill results owed")
	stop()

	restartWithADrillsHookAdded(t, ns, first, added, firstHook.URL, addedHook.URL)
}

// The drill_result twin of the test above: the drill results up to the last one every delivery
// was tried for (AlertAttempt.TriedDrills) are owed to no webhook added since.
func TestAWebhookAddedToADrillGroupBeforeARestartIsNotSentTheDrillResultsTheGroupWasToldBefore(t *testing.T) {
	first, added := &receiver{}, &receiver{}
	firstHook, addedHook := serve(t, first), serve(t, added)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	stop := startSender(t, ns, version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", firstHook.URL)), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the sender to dispatch the drill results owed from before its start")
	drillEnds(t, ns.JS, "d1")
	waitAttempt(t, ns, "drills", 1)
	stop()

	restartWithADrillsHookAdded(t, ns, first, added, firstHook.URL, addedHook.URL)
}

// drillsOwedDispatched is what a sender logs once it has dispatched the drill results owed from
// before it started.
const drillsOwedDispatched = "drill results owed from before the start dispatched"

// hanging answers no request until the request ends (its sender stopped) while hang is set,
// then accepts.
type hanging struct {
	receiver
	hang atomic.Bool
}

func (h *hanging) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.hang.Load() {
		_, _ = io.Copy(io.Discard, r.Body) // a server sees its client go only once it read the body
		h.mu.Lock()
		h.requests++
		h.mu.Unlock()
		<-r.Context().Done()
		return
	}
	h.receiver.ServeHTTP(w, r)
}

func TestAFirstAttemptUnansweredWhenTheSenderStopsIsMadeAfterTheRestartThoughALaterAlertWasRecorded(t *testing.T) {
	slow, fast := &hanging{}, &receiver{}
	slow.hang.Store(true)
	slowHook, fastHook := serve(t, slow), serve(t, fast)
	ns := eventstest.Start(t)
	c := version(t, 1, group("slow", slowHook.URL, ""), group("fast", fastHook.URL, ""))
	stop := startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	followsSTATE(t, ns, 5*time.Second, "")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	waitAttempt(t, ns, "fast", 2) // both transitions recorded as delivered to fast
	eventstest.Eventually(t, 5*time.Second, func() bool { return slow.count() == 2 }, "both first attempts to slow waiting")
	stop()
	if n := len(stored(t, ns, "slow")); n != 0 {
		t.Fatalf("ALERTS holds %d attempts to slow, want none (each was waiting when the sender stopped)", n)
	}

	slow.hang.Store(false)
	logs := &eventstest.Logs{}
	startSender(t, ns, c, logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slow.delivered() == 2 }, "both transitions delivered to slow after the restart")
	owed(t, logs, `"new":2,"resumed":0,"skipped":2`)
	if n := fast.count(); n != 2 {
		t.Errorf("fast got %d requests, want the 2 before the restart", n)
	}
}

func TestWhileALERTSIsAwayAtStartLaterTransitionsAreAlertedAndThoseOwedWaitForIt(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	before := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	alerts := ns.Stream(t, events.StreamAlerts).CachedInfo().Config
	if err := ns.JS.DeleteStream(context.Background(), events.StreamAlerts); err != nil {
		t.Fatal(err)
	}

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return caughtUp(logs, events.StreamState) }, "the sender to catch up with STATE")
	after := westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered() == 1 }, "the transition after the start alerted without ALERTS")
	if got := eventIDs(t, rc); got[0] != after.ID || logs.Count(owedDispatched) != 0 {
		t.Fatalf("delivered %v before ALERTS was back (owed dispatched %d times), want only %s", got, logs.Count(owedDispatched), after.ID)
	}

	if _, err := ns.JS.CreateStream(context.Background(), alerts); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 2 }, "the transition owed from before the start alerted once ALERTS is back")
	if got := eventIDs(t, rc); got[1] != before.ID {
		t.Errorf("delivered %v, want %s second", got, before.ID)
	}
}

// caughtUp reports whether logs tell that a follower caught up with stream.
func caughtUp(logs *eventstest.Logs, stream string) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"message":"stream caught up"`) && strings.Contains(line, `"stream":"`+stream+`"`) {
			return true
		}
	}
	return false
}

// eventIDs returns the event ids of the alerts rc accepted, in order.
func eventIDs(t *testing.T, rc *receiver) []string {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, b := range rc.accepted {
		var p alert.Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.EventID)
	}
	return out
}

// recordFailed stores on ALERTS, as another controller would, a failed attempt n of the delivery
// of e to url in group, recorded at at and asking for its retry retryInMS later.
func recordFailed(t *testing.T, ns *eventstest.Server, e events.Envelope, group, url string, n int, at time.Time, retryInMS int64) {
	t.Helper()
	id := events.DerivedID(e.ID, group+"|"+url)
	a := events.AlertAttempt{Alert: group, Kind: "pool_down", Webhook: url, Delivery: id, Attempt: n,
		HTTPStatus: 500, Error: "answered 500", Result: events.AlertFailed, RetryInMS: retryInMS, Text: "shop west down"}
	rec, err := events.Derived(events.TypeAlertAttempted, "controller-2", e.ID, id+"|"+strconv.Itoa(n), at, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.AlertSubject(group), rec); err != nil {
		t.Fatal(err)
	}
}

func TestAResumedDeliveryWhoseRecordAsksForANegativeRetryIsStillRetriedWithBackoff(t *testing.T) {
	rc := &receiver{fails: 1 << 30}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	recordFailed(t, ns, down, "oncall", hook.URL, 1, time.Now(), -1)

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":1,"skipped":0`)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.count() >= 6 }, "six attempts of the resumed delivery")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i := 1; i < 6; i++ {
		if gap := rc.at[i].Sub(rc.at[i-1]); gap < 10*time.Millisecond {
			t.Fatalf("attempt %d came %s after the one before, want the backoff (20ms at least) between them", i+2, gap)
		}
	}
}

func TestAResumedDeliveryRecordedByAClockAnHourAheadIsRetriedWithinTheLongestBackoff(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	recordFailed(t, ns, down, "oncall", hook.URL, 1, time.Now().Add(time.Hour), 1000)

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":1,"skipped":0`)
	rc.waitAccepted(t, 5*time.Second, "the resumed delivery's next attempt, within the longest backoff (50ms) of the start")
}

func TestASenderWhoseClockIsAheadOfTheStreamsStillSendsATransitionStoredWithinItsRetryFor(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)

	// The controller's clock is 15 minutes ahead of the NATS server's, which stamped the
	// transition a moment ago: well within the group's retry_for (10m, the default).
	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, func() time.Time { return time.Now().Add(15 * time.Minute) })
	owed(t, logs, `"new":1,"resumed":0,"skipped":0`)
	rc.waitAccepted(t, 5*time.Second, "the transition stored a moment ago by the stream's clock, delivered")
}

// storedAt returns when STATE stored the event id, by the NATS server's clock.
func storedAt(t *testing.T, ns *eventstest.Server, id string) time.Time {
	t.Helper()
	st := ns.Stream(t, events.StreamState)
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("STATE holds no event %s: %v", id, err)
		}
		if e, err := events.Decode(m.Data); err == nil && e.ID == id {
			return m.Time
		}
	}
}

func TestADrillResultDeliveryFailingWhenTheSenderStopsIsResumedAfterARestartWithItsIDAndTheNextAttempt(t *testing.T) {
	rc := &receiver{fails: 1 << 30} // it refuses until the test lets it accept
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", hook.URL))
	stop := startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	following(t, ns, events.StreamDrills, 1)
	drillEnds(t, ns.JS, "d1")
	waitAttempt(t, ns, "drills", 2)
	stop()

	before := stored(t, ns, "drills")
	last := before[len(before)-1]
	if last.Result != events.AlertFailed {
		t.Fatalf("the last attempt stored before the restart is %+v, want failed", last)
	}
	rc.mu.Lock()
	rc.fails = rc.requests // it accepts from now on
	rc.mu.Unlock()

	startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	rc.waitAccepted(t, 5*time.Second, "the failing drill_result delivery resumed after the restart")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	h := rc.headers[0]
	if n, _ := strconv.Atoi(h.Get(alert.HeaderAttempt)); h.Get(alert.HeaderDelivery) != last.Delivery || n <= last.Attempt {
		t.Errorf("resumed as delivery %s attempt %s, want delivery %s after attempt %d",
			h.Get(alert.HeaderDelivery), h.Get(alert.HeaderAttempt), last.Delivery, last.Attempt)
	}
}

func TestADrillResultUnansweredWhenTheSenderStopsIsSentAfterTheRestart(t *testing.T) {
	slow := &hanging{}
	slow.hang.Store(true)
	hook := serve(t, slow)
	ns := eventstest.Start(t)
	c := version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", hook.URL))
	stop := startSender(t, ns, c, &eventstest.Logs{}, time.Now)
	following(t, ns, events.StreamDrills, 1)
	drillEnds(t, ns.JS, "d1")
	eventstest.Eventually(t, 5*time.Second, func() bool { return slow.count() == 1 }, "the first attempt waiting on the webhook")
	stop() // the controller stops (a rolling restart) before the webhook answers
	if n := len(stored(t, ns, "drills")); n != 0 {
		t.Fatalf("ALERTS holds %d attempts, want none (the first was waiting when the sender stopped)", n)
	}

	slow.hang.Store(false)
	logs := &eventstest.Logs{}
	startSender(t, ns, c, logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slow.delivered() == 1 }, "the drill result delivered after the restart")
	if !strings.Contains(logs.String(), `"resumed":1`) {
		t.Errorf("the restarted sender logged no resumed drill result:\n%s", logs)
	}
}

func TestADeliveryRecordedByAControllerWhoseClockIsAnHourBehindIsStillRetriedForItsRetryFor(t *testing.T) {
	rc := &receiver{fails: 1 << 30}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	recordFailed(t, ns, down, "oncall", hook.URL, 1, time.Now().Add(-time.Hour), 20) // its retry_for is 10m

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":1,"skipped":0`)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.count() >= 3 }, "three attempts of the resumed delivery")
	for _, a := range stored(t, ns, "oncall") {
		if a.Result == events.AlertAbandoned {
			t.Fatalf("attempt %d abandoned (%s), a few seconds after the event: retry_for counted from the other controller's clock", a.Attempt, a.Error)
		}
	}
}

// unclaimed hangs every claim published through it while hang is set, until run (the sender's
// context) ends: a sender stopped then has stored no claim, as one that died between a drill's
// end, stored on DRILLS, and the claim of its drill_result. The claim's own context ends after
// run's (a sender makes the attempt once a claim is not answered within a second: the test stops
// it well within that), and the delivery's with it: the attempt is not made.
type unclaimed struct {
	jetstream.JetStream
	run     context.Context
	hang    atomic.Bool
	waiting atomic.Int32
}

func (u *unclaimed) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeAlertClaimed && u.hang.Load() {
		u.waiting.Add(1)
		<-u.run.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return u.JetStream.PublishMsg(ctx, m, opts...)
}

// A drill result stored on DRILLS whose controller stopped before claiming it was never sent:
// no claim or attempt told of it, and at its start a controller sent only the drill results
// those told of. The drill results after the last one every delivery was tried for are owed.
func TestADrillResultWhoseSenderStoppedBeforeClaimingItIsSentOnceByTheSendersStartedAfter(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", hook.URL))
	js := &unclaimed{JetStream: ns.JS}
	stop := eventstest.Run(t, "alerts", func(ctx context.Context) error {
		js.run = ctx
		return alert.Run(ctx, alert.Options{JS: js, Config: c, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	following(t, ns, events.StreamDrills, 1)
	drillEnds(t, ns.JS, "d1")
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(stored(t, ns, "drills")) == 1 }, "d1's result delivered and recorded")
	js.hang.Store(true)
	drillEnds(t, ns.JS, "d2")
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.waiting.Load() == 1 }, "d2's result being claimed")
	stop() // controller-1 stops between d2's end and the claim of its result
	if n := len(claims(t, ns, "drills")); n != 1 {
		t.Fatalf("ALERTS holds %d claims, want d1's alone", n)
	}

	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	startReplica(t, ns, c, "controller-2", &eventstest.Logs{})
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered() == 2 }, "d2's result delivered after the restart")
	rc.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var p alert.Payload
	if err := json.Unmarshal(rc.accepted[1], &p); err != nil || p.Drill == nil || p.Drill.ID != "d2" || rc.requests != 2 {
		t.Errorf("the webhook got %d requests, the second about %+v; want 2, the second about d2", rc.requests, p.Drill)
	}
}

// A drill_result group added at a restart is sent no drill result that ended before it, though
// no group was told about drills before it: the attempts recorded since tell in tried_drills
// that the sender read past the drill's end.
func TestADrillGroupAddedAtARestartIsNotSentTheDrillResultsThatEndedBeforeIt(t *testing.T) {
	pages, drills := &receiver{}, &receiver{}
	pagesHook, drillsHook := serve(t, pages), serve(t, drills)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	stop := startSender(t, ns, version(t, 1, group("oncall", pagesHook.URL, "")), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the sender to dispatch the drill results owed from before its start")
	owed(t, logs, `"events":0`)
	drillEnds(t, ns.JS, "d1") // told to no group
	last, err := ns.Stream(t, events.StreamDrills).GetLastMsgForSubject(context.Background(), events.DrillSubject("d1"))
	if err != nil {
		t.Fatal(err)
	}
	ended, err := events.Decode(last.Data)
	if err != nil {
		t.Fatal(err)
	}
	// The sender reads DRILLS and STATE apart: a transition is alerted until an attempt tells
	// it read past d1's end.
	up := true
	eventstest.Eventually(t, 5*time.Second, func() bool {
		if a := stored(t, ns, "oncall"); len(a) > 0 && a[len(a)-1].TriedDrills == ended.ID {
			return true
		}
		if up {
			westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
		} else {
			westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
		}
		up = !up
		return false
	}, "an attempt to tell in tried_drills that the sender read past d1's end")
	stop()

	logs = &eventstest.Logs{}
	startSender(t, ns, version(t, 2, group("oncall", pagesHook.URL, ""),
		fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", drillsHook.URL)), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the restarted sender to dispatch the drill results owed")
	if !strings.Contains(logs.String(), `"new":0,"resumed":0,"events":1`) {
		t.Errorf("the restarted sender logged %q with some owed, want none:\n%s", drillsOwedDispatched, logs)
	}
	drills.quiet(t, 300*time.Millisecond, 5*time.Second, "the added group to be told nothing more")
	if n := drills.count(); n != 0 {
		t.Errorf("the drill group added at the restart got %d requests, want none", n)
	}
}

// The transition twin: a group added at a restart is sent no transition appended before it,
// though the groups before it were told of none.
func TestATransitionGroupAddedAtARestartIsNotSentTheTransitionsBeforeIt(t *testing.T) {
	pages, drills := &receiver{}, &receiver{}
	pagesHook, drillsHook := serve(t, pages), serve(t, drills)
	ns := eventstest.Start(t)
	drillGroup := fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", drillsHook.URL)
	logs := &eventstest.Logs{}
	stop := startSender(t, ns, version(t, 1, drillGroup), logs, time.Now)
	owed(t, logs, `"events":0`)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown) // told to no group
	// The sender reads STATE and DRILLS apart: a drill result is alerted until an attempt tells
	// it read past the transition.
	n := 0
	eventstest.Eventually(t, 5*time.Second, func() bool {
		if a := stored(t, ns, "drills"); len(a) > 0 && a[len(a)-1].Tried == down.ID {
			return true
		}
		n++
		drillEnds(t, ns.JS, "d"+strconv.Itoa(n))
		return false
	}, "an attempt to tell in tried that the sender read past the transition")
	stop()

	logs = &eventstest.Logs{}
	startSender(t, ns, version(t, 2, drillGroup, group("oncall", pagesHook.URL, "")), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(owedDispatched) == 1 }, "the restarted sender to dispatch the alerts owed")
	if !strings.Contains(logs.String(), `"new":0,"resumed":0,"skipped":1,"events":1`) {
		t.Errorf("the restarted sender logged %q with some owed, want none:\n%s", owedDispatched, logs)
	}
	pages.quiet(t, 300*time.Millisecond, 5*time.Second, "the added group to be told nothing more")
	if n := pages.count(); n != 0 {
		t.Errorf("the group added at the restart got %d requests, want none", n)
	}
}

// A controller that starts owing drill results (the one before it stopped before claiming them)
// to one group, among many groups that are told about drills too, sends each of them and stops
// when asked. The first claims, read back while it still went through the groups for the rest,
// took the ledger's lock and waited for the groups' while the dispatch held the groups' and
// waited for the ledger's: the sender sent none but the first few, and never stopped.
func TestEveryDrillResultOwedAtTheStartIsSentBesideManyGroups(t *testing.T) {
	const drills, others = 20, 300
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	for i := range drills {
		drillEnds(t, ns.JS, fmt.Sprintf("d%02d", i))
	}
	// The others' retry_for has run out for every drill by the start: each is owed none.
	gs := []string{fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", hook.URL)}
	for i := range others {
		gs = append(gs, fmt.Sprintf("  - {name: g%03d, on: [drill_result], retry_for: 1ms, webhooks: [{url: %q}]}\n", i, hook.URL))
	}
	stop := startSender(t, ns, version(t, 1, gs...), &eventstest.Logs{}, time.Now)
	eventstest.Eventually(t, 20*time.Second, func() bool { return rc.delivered() == drills }, "the %d drill results owed delivered", drills)
	stop()
}

// restartWithADrillsHookAdded starts a sender again with the webhook at addedURL added to the
// drills group, whose webhook at firstURL was sent one drill result before, and checks that the
// restarted sender owes the added webhook nothing: first got one request, added none.
func restartWithADrillsHookAdded(t *testing.T, ns *eventstest.Server, first, added *receiver, firstURL, addedURL string) {
	t.Helper()
	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 2, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}, {url: %q}]}\n",
		firstURL, addedURL)), logs, time.Now)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(drillsOwedDispatched) == 1 }, "the restarted sender to dispatch the drill results owed")
	if !strings.Contains(logs.String(), `"new":0,"resumed":0,"events":1`) {
		t.Errorf("the restarted sender logged %q with some owed, want none:\n%s", drillsOwedDispatched, logs)
	}
	if n, m := first.count(), added.count(); n != 1 || m != 0 {
		t.Errorf("the first webhook got %d requests and the one added %d, want 1 and none", n, m)
	}
}

package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// unread reaches ALERTS to publish, never to read: its consumer does not come (the node it is
// on hangs, it is being created again, or it reads a long history at a start).
type unread struct{ jetstream.JetStream }

func (u unread) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == events.StreamAlerts {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return u.JetStream.Stream(ctx, name)
}

// arrivals keeps when the first request for each STATE event came.
type arrivals struct {
	mu    sync.Mutex
	first map[string]time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p alert.Payload
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &p)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.first[p.EventID]; !ok {
		a.first[p.EventID] = time.Now()
	}
}

func TestWhileALERTSConsumerDoesNotReadAStormIsAlertedWithoutASecondsWaitForEachClaim(t *testing.T) {
	got := &arrivals{first: map[string]time.Time{}}
	hook := serve(t, got)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	log := zerolog.New(zerolog.NewTestWriter(t))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: unread{ns.JS}, Config: c, Name: "controller-1", Log: log})
	})
	following(t, ns, events.StreamState, 1)

	const storm = 300 // more than the deliveries one webhook is sent at once
	appended := map[string]time.Time{}
	for i := range storm {
		from, to := events.StatusUp, events.StatusDown
		if i%2 == 1 {
			from, to = to, from
		}
		at := time.Now()
		appended[westGoes(t, ns.JS, from, to).ID] = at
	}
	eventstest.Eventually(t, 30*time.Second, func() bool { got.mu.Lock(); defer got.mu.Unlock(); return len(got.first) == storm },
		"every transition of the storm alerted")
	var waits []time.Duration
	got.mu.Lock()
	for id, at := range got.first {
		waits = append(waits, at.Sub(appended[id]))
	}
	got.mu.Unlock()
	slices.Sort(waits)
	t.Logf("from transition to webhook: p50 %s, max %s", waits[len(waits)/2], waits[len(waits)-1])
	// Each claim waiting for ALERTS' consumer put the median at a second (1.04 s); the median,
	// not the maximum, so that a loaded machine's pauses do not fail it.
	if w := waits[len(waits)/2]; w > 500*time.Millisecond {
		t.Errorf("half the transitions of the storm reached the webhook over %s after they were appended, want under 0.5 s: each claim waited for ALERTS' consumer", w)
	}
}

// stormTakeOver is the storm test's TakeOver: records a loaded machine stores a few seconds
// late are not the dropped ones it looks for (the recorder dropped them past the records
// waiting, and they never came), so it waits as long as the default (Timeout + 5 s) would,
// near enough.
const stormTakeOver = 10 * time.Second

func TestTwoSendersFarFromALERTSRecordAStormOfDeliveriesAndSendEachOnce(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	const groups, storm = 6, 300 // more than the records that waited to be stored (1,024), stored one at a time
	var gs []string
	for i := range groups {
		gs = append(gs, group(fmt.Sprintf("g%d", i), hook.URL, ""))
	}
	c := version(t, 1, gs...)
	for _, name := range []string{"controller-1", "controller-2"} {
		link := eventstest.NewSlowLink(t, ns.URL) // ALERTS a few ms away, as across zones
		link.Delay(2*time.Millisecond, 2*time.Millisecond)
		_, js := eventstest.ConnectJS(t, link.URL)
		log := zerolog.New(zerolog.NewTestWriter(t)).With().Str("controller", name).Logger()
		eventstest.Run(t, "alerts of "+name, func(ctx context.Context) error {
			return alert.Run(ctx, alert.Options{JS: js, Config: c, Name: name, Log: log,
				Timeout: replicaTimeout, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, TakeOver: stormTakeOver})
		})
	}
	following(t, ns, events.StreamState, 2)
	for i := range storm {
		from, to := events.StatusUp, events.StatusDown
		if i%2 == 1 {
			from, to = to, from
		}
		westGoes(t, ns.JS, from, to)
	}
	eventstest.Eventually(t, 30*time.Second, func() bool { return rc.delivered() >= groups*storm }, "every delivery of the storm made")
	rc.quiet(t, stormTakeOver+time.Second, 40*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != groups*storm {
		t.Errorf("the webhook got %d requests for %d deliveries, want one each: records were dropped, and the other controller took their attempts over", n, groups*storm)
	}
	alerts := ns.Stream(t, events.StreamAlerts)
	recorded := 0
	// Each attempt's subject holds its claim, then its record.
	info, err := alerts.Info(context.Background(), jetstream.WithSubjectFilter("detour.alert.*.claim.*.*"))
	if err == nil {
		for _, n := range info.State.Subjects {
			recorded += int(n) - 1
		}
	}
	if recorded < groups*storm {
		t.Errorf("ALERTS holds %d attempts for %d deliveries, want one each", recorded, groups*storm)
	}
}

func TestAnAlertAnotherControllerAbandonsForItsFullQueueIsSentByOneWithRoom(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	startReplica(t, ns, version(t, 1, group("oncall", hook.URL, "")), "controller-1", &eventstest.Logs{})
	following(t, ns, events.StreamState, 1)
	following(t, ns, events.StreamAlerts, 1)

	// controller-2 has 4,096 deliveries to the webhook in flight: it abandons this one at
	// once, without an attempt, and records so before controller-1 comes to it.
	down, err := events.New(events.TypePoolDown, "test", time.Now(), events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	seq := recordAbandoned(t, ns, down, "oncall", "transition", hook.URL, "")
	alerts := ns.Stream(t, events.StreamAlerts)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for c := range alerts.ListConsumers(context.Background()).Info() {
			if c.Delivered.Stream >= seq {
				return true
			}
		}
		return false
	}, "controller-1 to read controller-2's record")
	if _, err := events.Publish(context.Background(), ns.JS, events.PoolStateSubject("shop", "west"), down); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered() == 1 },
		"controller-1 to send the alert controller-2 had no room for")
}

func TestAControllerStoppedRightAfterAStormRestartsWithoutSendingItsAlertsAgain(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	const groups, storm = 6, 300
	var gs []string
	for i := range groups {
		gs = append(gs, group(fmt.Sprintf("g%d", i), hook.URL, ""))
	}
	c := version(t, 1, gs...)
	link := eventstest.NewSlowLink(t, ns.URL)
	_, js := eventstest.ConnectJS(t, link.URL)
	logs := &eventstest.Logs{}
	log := zerolog.New(logs)
	stop := eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: js, Config: c, Name: "controller-1", Log: log})
	})
	following(t, ns, events.StreamState, 1)
	for i := range storm {
		from, to := events.StatusUp, events.StatusDown
		if i%2 == 1 {
			from, to = to, from
		}
		westGoes(t, ns.JS, from, to)
	}
	eventstest.Eventually(t, 30*time.Second, func() bool { return rc.count() == groups*storm }, "every delivery of the storm sent")
	link.Delay(100*time.Millisecond, 0) // ALERTS slow to answer, as while it elects a leader: the records wait
	eventstest.Eventually(t, 30*time.Second, func() bool { return logs.Count("alert delivery attempted") == groups*storm },
		"every delivery of the storm made")
	stop() // as an operator restarting it would, once it logged every delivery made
	eventstest.Run(t, "alerts again", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: c, Name: "controller-1", Log: log})
	})
	rc.quiet(t, 3*time.Second, 60*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != groups*storm {
		t.Errorf("the webhook got %d requests for %d deliveries, want one each: the records waiting to be stored when the controller stopped were dropped, and its next run made those deliveries again", n, groups*storm)
	}
}

// cutAnswer accepts the first request with its status and holds the rest of the answer until
// the sender hangs up; it hands every later one to rc.
type cutAnswer struct {
	rc   *receiver
	once sync.Once
}

func (h *cutAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	first := false
	h.once.Do(func() { first = true })
	if !first {
		h.rc.ServeHTTP(w, r)
		return
	}
	h.rc.mu.Lock()
	h.rc.requests++
	h.rc.at = append(h.rc.at, time.Now())
	h.rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// answered closes reached once the sender has a webhook's status, before the rest of its answer.
type answered struct {
	once    sync.Once
	reached chan struct{}
}

func (a *answered) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		a.once.Do(func() { close(a.reached) })
	}
	return resp, err
}

func TestAnAlertAcceptedAsTheControllerStopsIsRecordedAndNotSentAgainAfterItsRestart(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, &cutAnswer{rc: rc})
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	got := &answered{reached: make(chan struct{})}
	log := zerolog.New(zerolog.NewTestWriter(t))
	stop := eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: c, Name: "controller-1", Log: log, Client: &http.Client{Transport: got},
			Timeout: replicaTimeout, TakeOver: replicaTakeOver})
	})
	following(t, ns, events.StreamState, 1)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	select {
	case <-got.reached: // the webhook answered 200, the rest of its answer still to come
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook did not answer the alert within 10 s")
	}
	stop()
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	rc.quiet(t, replicaTakeOver+time.Second, 30*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 1 {
		t.Errorf("the webhook got %d requests, want 1: it answered 200 as the controller stopped, which recorded nothing, and its next run sent the alert again", n)
	}
}

// A controller with 4,096 deliveries to a webhook in flight abandons the next one unsent,
// recorded as attempt 0 and as tried (AlertAttempt.Tried), so that its later records tell of
// that event's deliveries as made: the other controller, down then, started and sent nothing.
func TestAnAlertAControllerAbandonsForItsFullQueueWhileTheOtherIsDownIsSentWhenTheOtherStarts(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	recordAbandoned(t, ns, down, "oncall", "transition", hook.URL, down.ID)
	logs := &eventstest.Logs{}
	startReplica(t, ns, version(t, 1, group("oncall", hook.URL, "")), "controller-1", logs)
	owed(t, logs, `"new":1,"resumed":0,"skipped":0`)
	rc.waitAccepted(t, 5*time.Second, "controller-1 to send the alert controller-2 had no room for")
}

// The drill_result twin of the test above: the scorecard of a drill that ended while the other
// controller was down, abandoned unsent by the one up for want of room, was never sent: at its
// start a controller resumed only the drill results whose attempts failed.
func TestADrillResultAControllerAbandonsForItsFullQueueWhileTheOtherIsDownIsSentWhenTheOtherStarts(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	drillEvent(t, ns.JS, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 1})
	scored := drillEvent(t, ns.JS, "d1", events.TypeDrillScored, drill.Scorecard{Drill: "d1", Name: "west-outage", By: "ops", RolledBack: "completed by ops"})
	recordAbandoned(t, ns, scored, "drills", "drill_result", hook.URL, "")
	logs := &eventstest.Logs{}
	startReplica(t, ns, version(t, 1, fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", hook.URL)), "controller-1", logs)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("drill results owed from before the start dispatched") == 1 },
		"controller-1 to dispatch the drill results owed from before its start")
	rc.waitAccepted(t, 5*time.Second, "controller-1 to send the drill result controller-2 had no room for")
}

// recordAbandoned stores on ALERTS, as controller-2 would with 4,096 deliveries to url in flight,
// the delivery of e to url in group, of kind, abandoned unsent (attempt 0), telling tried as
// AlertAttempt.Tried; and returns its stream sequence.
func recordAbandoned(t *testing.T, ns *eventstest.Server, e events.Envelope, group, kind, url, tried string) uint64 {
	t.Helper()
	id := events.DerivedID(e.ID, group+"|"+url)
	a := events.AlertAttempt{Alert: group, Kind: kind, Webhook: url, Delivery: id, Result: events.AlertAbandoned,
		Error: "not sent: 4096 deliveries to this webhook are in flight already", Tried: tried}
	rec, err := events.Derived(events.TypeAlertAttempted, "controller-2", e.ID, id+"|0", time.Now(), a)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), ns.JS, events.AlertSubject(group), rec)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// earlierSends is what a sender logs of a controller of an earlier version, which claims nothing
// and sends every alert beside it.
const earlierSends = "a controller of an earlier version sends alerts beside this one: each alert is sent twice until it stops"

// recordEarlier stores on ALERTS the delivery of e to url in group, delivered at attempt 1, as
// a controller of an earlier version named by records it: on the group's subject, unclaimed.
func recordEarlier(t *testing.T, ns *eventstest.Server, e events.Envelope, group, url, by string) {
	t.Helper()
	id := events.DerivedID(e.ID, group+"|"+url)
	a := events.AlertAttempt{Alert: group, Kind: "transition", Webhook: url, Delivery: id, Attempt: 1, HTTPStatus: 200,
		Result: events.AlertDelivered, Text: "shop west down"}
	rec, err := events.Derived(events.TypeAlertAttempted, by, e.ID, id+"|1", time.Now(), a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.AlertSubject(group), rec); err != nil {
		t.Fatal(err)
	}
}

// A controller of an earlier version claims no attempt and sends every alert: beside one of this
// version each alert is sent twice, and the upgrade note says to stop the earlier ones first. One
// of this version that reads such a record stored after it read ALERTS says so, once for each.
func TestASenderWarnsOnceOfEachEarlierControllerRecordingAttemptsWhileItRuns(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	recordEarlier(t, ns, down, "oncall", hook.URL, "controller-0") // before the start: it may have stopped since
	logs := &eventstest.Logs{}
	startReplica(t, ns, version(t, 1, group("oncall", hook.URL, "")), "controller-1", logs)
	owed(t, logs, `"new":0,"resumed":0,"skipped":1`)

	up := westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	recordEarlier(t, ns, up, "oncall", hook.URL, "controller-2")
	recordEarlier(t, ns, up, "oncall", "http://127.0.0.1:1", "controller-2")
	recordAbandoned(t, ns, up, "oncall", "transition", "http://127.0.0.1:2", "") // this version's, for want of room
	recordEarlier(t, ns, up, "oncall", "http://127.0.0.1:3", "controller-3")
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(earlierSends) == 2 }, "controller-1 to warn of controller-2 and controller-3")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, earlierSends) && !strings.Contains(line, `"recorded_by":"controller-2"`) && !strings.Contains(line, `"recorded_by":"controller-3"`) {
			t.Errorf("controller-1 warned of another than controller-2 and controller-3: %s", line)
		}
	}
}

// A controller of the versions between claiming attempts and recording them on their claim's
// subject claims each attempt and records it on the group's subject: it does not send each
// alert twice, and one of this version does not warn of it. One that records an attempt another
// claimed, unclaimed itself, is warned of.
func TestASenderDoesNotWarnOfAnEarlierControllerThatClaimsItsAttempts(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	startReplica(t, ns, version(t, 1, group("oncall", hook.URL, "")), "controller-1", logs)
	owed(t, logs, `"events":0`)

	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	// claimed stores by's claim of attempt 1 of down's delivery to url, as those versions did:
	// on the group's subject.
	claimed := func(url, by string) {
		id := events.DerivedID(down.ID, "oncall|"+url)
		c, err := events.Derived(events.TypeAlertClaimed, by, down.ID, id+"|1", time.Now(),
			events.AlertClaim{Alert: "oncall", Kind: "transition", Webhook: url, Delivery: id, Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), ns.JS, events.AlertSubject("oncall"), c); err != nil {
			t.Fatal(err)
		}
	}
	claimed("http://127.0.0.1:1", "controller-2")
	recordEarlier(t, ns, down, "oncall", "http://127.0.0.1:1", "controller-2") // claimed first: not warned of
	claimed("http://127.0.0.1:2", "controller-5")
	recordEarlier(t, ns, down, "oncall", "http://127.0.0.1:2", "controller-4") // claimed by another: warned of
	recordEarlier(t, ns, down, "oncall", "http://127.0.0.1:3", "controller-3")
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), `"recorded_by":"controller-3"`) },
		"controller-1 to warn of controller-3, recorded after controller-2")
	if !strings.Contains(logs.String(), `"recorded_by":"controller-4"`) || strings.Contains(logs.String(), `"recorded_by":"controller-2"`) {
		t.Errorf("controller-1 warned of controller-2, which claims its attempts, or not of controller-4, which recorded one controller-2 claimed:\n%s", logs)
	}
}

package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// Two controllers each run an alert sender on one STATE: a webhook gets one delivery of each
// event, from either.

// replicaTimeout bounds an attempt of a replica in these tests, and replicaTakeOver is how long
// one waits for an attempt another claimed before making it itself.
const (
	replicaTimeout  = 2 * time.Second
	replicaTakeOver = 3 * time.Second
)

// startReplica runs the alert sender of the controller named name with c's groups, logging to
// logs as well as to the test, until the returned stop.
func startReplica(t *testing.T, ns *eventstest.Server, c *config.Config, name string, logs *eventstest.Logs) (stop func()) {
	t.Helper()
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).With().Str("controller", name).Logger()
	return eventstest.Run(t, "alerts of "+name, func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: c, Name: name, Log: log,
			Timeout: replicaTimeout, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, TakeOver: replicaTakeOver})
	})
}

// following waits until n consumers read stream: the senders follow it.
func following(t *testing.T, ns *eventstest.Server, stream string, n int) {
	t.Helper()
	st := ns.Stream(t, stream)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Consumers == n
	}, "%d senders to follow %s", n, stream)
}

// claims returns the claims ALERTS holds for group, in order.
func claims(t *testing.T, ns *eventstest.Server, group string) []events.Envelope {
	t.Helper()
	alerts := ns.Stream(t, events.StreamAlerts)
	var out []events.Envelope
	for seq := uint64(1); ; seq++ {
		m, err := alerts.GetMsg(context.Background(), seq)
		if err != nil {
			return out
		}
		if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeAlertClaimed && strings.HasPrefix(m.Subject, events.AlertSubject(group)+".claim.") {
			out = append(out, e)
		}
	}
}

func TestTwoSendersOnOneStateDeliverEachTransitionAndDrillResultOnce(t *testing.T) {
	pages, drills := &receiver{}, &receiver{}
	pagesHook, drillsHook := serve(t, pages), serve(t, drills)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", pagesHook.URL, ""),
		fmt.Sprintf("  - {name: drills, on: [drill_result], webhooks: [{url: %q}]}\n", drillsHook.URL))
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	startReplica(t, ns, c, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)
	following(t, ns, events.StreamDrills, 2)

	const transitions = 6
	for i := range transitions / 2 {
		westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
		westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
		drillEnds(t, ns.JS, fmt.Sprintf("d%d", i))
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return pages.delivered() >= transitions && drills.delivered() >= transitions/2 },
		"%d transitions and %d drill results delivered", transitions, transitions/2)
	pages.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhooks to be told nothing more")
	drills.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhooks to be told nothing more")
	for name, rc := range map[string]*receiver{"oncall": pages, "drills": drills} {
		rc.mu.Lock()
		ids := map[string]int{}
		for _, h := range rc.headers {
			ids[h.Get(alert.HeaderDelivery)]++
		}
		if len(rc.headers) != len(ids) || rc.requests != len(ids) {
			t.Errorf("%s's webhook got %d requests for %d deliveries, want one each: %v", name, rc.requests, len(ids), ids)
		}
		rc.mu.Unlock()
	}
}

func TestADeliveryClaimedByASenderThatStopsBeforeItIsAnsweredIsMadeByTheOtherWithinTheTakeOver(t *testing.T) {
	slow := &hanging{}
	slow.hang.Store(true)
	hook := serve(t, slow)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	stops := map[string]func(){
		"controller-1": startReplica(t, ns, c, "controller-1", &eventstest.Logs{}),
		"controller-2": startReplica(t, ns, c, "controller-2", &eventstest.Logs{}),
	}
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return slow.count() >= 1 }, "the first attempt to reach the webhook")
	var claimed []events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool { claimed = claims(t, ns, "oncall"); return len(claimed) >= 1 }, "the first attempt claimed on ALERTS")
	slow.hang.Store(false)
	stopped := time.Now()
	stops[claimed[0].Source]() // the sender making the attempt stops before the webhook answers

	eventstest.Eventually(t, replicaTakeOver+replicaTimeout, func() bool { return slow.delivered() == 1 },
		"the other sender to deliver within its take-over (%s) of the claimer stopping", replicaTakeOver)
	t.Logf("delivered %s after the claimer stopped", time.Since(stopped).Round(time.Millisecond))
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if n := slow.requests; n != 2 || slow.headers[0].Get(alert.HeaderAttempt) != "2" {
		t.Errorf("the webhook got %d requests, the accepted one attempt %s; want 2, the one cut off and attempt 2",
			n, slow.headers[0].Get(alert.HeaderAttempt))
	}
	var a []events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool { a = stored(t, ns, "oncall"); return len(a) >= 1 }, "the delivery recorded")
	if len(a) != 1 || a[0].Result != events.AlertDelivered || a[0].Attempt != 2 {
		t.Errorf("ALERTS holds %+v, want attempt 2 delivered", a)
	}
}

func TestASenderRestartedBesideAnotherDoesNotResendWhatTheOtherSent(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	stop := startReplica(t, ns, c, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	waitAttempt(t, ns, "oncall", 1)
	stop()

	logs := &eventstest.Logs{}
	startReplica(t, ns, c, "controller-2", logs)
	owed(t, logs, `"new":0,"resumed":0,"skipped":1`)
	westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered() >= 2 }, "the transition after the restart delivered")
	rc.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 2 {
		t.Errorf("the webhook got %d requests, want 2: one for each transition", n)
	}
}

func TestTwoSendersRetryAFailingDeliveryWithOneRequestPerAttempt(t *testing.T) {
	rc := &receiver{fails: 2}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	startReplica(t, ns, c, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	rc.waitAccepted(t, 5*time.Second, "the third attempt accepted")
	rc.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 3 {
		t.Errorf("the webhook got %d requests, want 3: two refused, one accepted", n)
	}
	var a []events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool { a = stored(t, ns, "oncall"); return len(a) >= 3 }, "three attempts recorded")
	for i, want := range []string{events.AlertFailed, events.AlertFailed, events.AlertDelivered} {
		if i >= len(a) || a[i].Attempt != i+1 || a[i].Result != want {
			t.Errorf("ALERTS holds %+v, want attempts 1 and 2 failed, 3 delivered", a)
			break
		}
	}
}

func TestASenderThatComesToAnAttemptInFlightAfterALERTSDuplicateWindowDoesNotMakeItAgain(t *testing.T) {
	slow := &hanging{}
	slow.hang.Store(true)
	attempts := &byAttempt{next: slow}
	hook := serve(t, attempts)
	ns := eventstest.Start(t)
	// An operator shortened ALERTS' duplicate window (nats stream edit ALERTS --dupe-window);
	// a controller whose connection came back after the default window meets the same.
	const window = 100 * time.Millisecond
	alerts := ns.Stream(t, events.StreamAlerts)
	cfg := alerts.CachedInfo().Config
	cfg.Duplicates = window
	if _, err := ns.JS.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	c := version(t, 1, group("oncall", hook.URL, ""))
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	following(t, ns, events.StreamState, 1)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	var claimed []events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool {
		claimed = claims(t, ns, "oncall")
		return len(claimed) == 1 && slow.count() == 1 && time.Since(claimed[0].Time) > 2*window
	}, "attempt 1 claimed, waiting on the webhook, for longer than the duplicate window")

	logs := &eventstest.Logs{}
	startReplica(t, ns, c, "controller-2", logs)
	owed(t, logs, `"new":1`) // controller-1's attempt is not recorded yet
	slow.hang.Store(false)
	eventstest.Eventually(t, replicaTimeout+replicaTakeOver+5*time.Second, func() bool { return slow.delivered() == 1 }, "the alert delivered")
	slow.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := attempts.of(1); n != 1 {
		t.Errorf("the webhook got attempt 1 %d times, want once: controller-2 made it again while controller-1's was in flight (requests by attempt: %v)",
			n, attempts)
	}
}

// byAttempt counts the requests a webhook gets by their Detour-Attempt, and hands them to next.
type byAttempt struct {
	mu   sync.Mutex
	n    map[string]int
	next http.Handler
}

func (b *byAttempt) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.n == nil {
		b.n = map[string]int{}
	}
	b.n[r.Header.Get(alert.HeaderAttempt)]++
	b.mu.Unlock()
	b.next.ServeHTTP(w, r)
}

// of returns how many requests carried attempt n.
func (b *byAttempt) of(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n[strconv.Itoa(n)]
}

func (b *byAttempt) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprint(b.n)
}

func TestOnceALERTSAnswersAgainTheRetriesOfADeliveryWhoseClaimWentUnansweredAreClaimed(t *testing.T) {
	rc := &receiver{fails: 1 << 30} // it refuses until the test lets it accept
	attempts := &byAttempt{next: rc}
	hook := serve(t, attempts)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	electing := eventstest.NewElecting(ns.JS, "detour.alert.", true) // controller-1's way to ALERTS
	logs := &eventstest.Logs{}
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).With().Str("controller", "controller-1").Logger()
	eventstest.Run(t, "alerts of controller-1", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: electing, Config: c, Name: "controller-1", Log: log,
			Timeout: replicaTimeout, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, TakeOver: replicaTakeOver})
	})
	startReplica(t, ns, c, "controller-2", &eventstest.Logs{})
	following(t, ns, events.StreamState, 2)

	// ALERTS does not answer controller-1's first claim, for a moment. That is of attempt 1, or
	// of a later one when controller-2 came to the delivery first and controller-1 follows it:
	// controller-1 makes that attempt unclaimed, controller-2 may make it too.
	electing.On.Store(true)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return electing.Refused.Load() > 0 }, "controller-1's claim unanswered")
	electing.On.Store(false)
	unclaimed := 0
	eventstest.Eventually(t, 5*time.Second, func() bool {
		unclaimed = firstAttempt(t, logs)
		return unclaimed > 0
	}, "controller-1 to make the attempt it could not claim")
	rc.mu.Lock()
	rc.fails = rc.requests + 6 // a few retries more
	rc.mu.Unlock()
	rc.waitAccepted(t, 10*time.Second, "the alert delivered")
	rc.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	for n := 1; attempts.of(n) > 0; n++ {
		if n != unclaimed && attempts.of(n) > 1 {
			t.Errorf("the webhook got attempt %d %d times, want once: ALERTS answered again (requests by attempt: %v)", n, attempts.of(n), attempts)
		}
	}
}

// firstAttempt returns the number of the first attempt logs tell of, 0 before any.
func firstAttempt(t *testing.T, logs *eventstest.Logs) int {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct {
			Message string `json:"message"`
			Attempt int    `json:"attempt"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "alert delivery attempted" {
			return l.Attempt
		}
	}
	return 0
}

// storing answers every claim published through it as a replicated ALERTS does while another
// publisher's claim of the same attempt is being stored: "duplicate message id is in process"
// (JetStream's 10158), which events.Append takes for another's claim stored first.
type storing struct{ jetstream.JetStream }

func (s storing) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeAlertClaimed {
		return nil, &jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}
	}
	return s.JetStream.PublishMsg(ctx, m, opts...)
}

func TestASenderWhoseClaimIsAnsweredAsAnotherBeingStoredLeavesTheAttemptToIt(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	c := version(t, 1, group("oncall", hook.URL, ""))
	startReplica(t, ns, c, "controller-1", &eventstest.Logs{})
	log := zerolog.New(zerolog.NewTestWriter(t)).With().Str("controller", "controller-2").Logger()
	eventstest.Run(t, "alerts of controller-2", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: storing{ns.JS}, Config: c, Name: "controller-2", Log: log,
			Timeout: replicaTimeout, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, TakeOver: replicaTakeOver})
	})
	following(t, ns, events.StreamState, 2)
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	rc.waitAccepted(t, 5*time.Second, "the alert delivered")
	rc.quiet(t, 500*time.Millisecond, 5*time.Second, "the webhook to be told nothing more")
	if n := rc.count(); n != 1 {
		t.Errorf("the webhook got %d requests, want 1: controller-2 took JetStream's answer that controller-1's claim was being stored for no answer", n)
	}
}

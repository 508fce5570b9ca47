package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/alert"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const doc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
      - {name: east, endpoints: [{name: e1, address: "127.0.0.12:80"}]}
alerts:
  - name: oncall
    on: [pool_down, failover]
    apps: [shop]
    webhooks: [{url: %q, secret_env: DETOUR_TEST_HOOK_SECRET}]
`

// serve runs h as a webhook on loopback until the test ends, closed after the senders started
// later stop.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// receiver fails the first fails requests with 500, then accepts; it keeps what it accepted.
type receiver struct {
	mu       sync.Mutex
	fails    int
	requests int
	accepted [][]byte
	headers  []http.Header
	at       []time.Time // when each request came
}

// waitAccepted waits until the receiver has accepted exactly one alert, within; what names it.
func (rc *receiver) waitAccepted(t *testing.T, within time.Duration, what string) {
	t.Helper()
	eventstest.Eventually(t, within, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.accepted) == 1
	}, "%s", what)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	rc.at = append(rc.at, time.Now())
	if rc.requests <= rc.fails {
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	rc.accepted = append(rc.accepted, body)
	rc.headers = append(rc.headers, r.Header.Clone())
}

// followsSTATE waits until the alert sender follows STATE (its consumer exists), within; when
// says what it waits for besides.
func followsSTATE(t *testing.T, ns *eventstest.Server, within time.Duration, when string) {
	t.Helper()
	st := ns.Stream(t, events.StreamState)
	eventstest.Eventually(t, within, func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Consumers == 1
	}, "the alert sender to follow STATE %s", when)
}

func transition(t *testing.T, js jetstream.JetStream, subject, typ string, tr events.Transition) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", time.Now(), tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js, subject, e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAWebhookThatFailsTwiceGetsOneDeliveryAndThreeRecordedAttempts(t *testing.T) {
	const secret = "s3cret-for-the-hook"
	t.Setenv("DETOUR_TEST_HOOK_SECRET", secret)
	rc := &receiver{fails: 2}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`/hooks/detour?token=query-secret"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	down := transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down: 0 of 1 endpoints serving, need 1"})

	alerts := ns.Stream(t, events.StreamAlerts)
	var attempts []events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool {
		attempts = attempts[:0]
		for seq := uint64(1); ; seq++ {
			m, err := alerts.GetMsg(context.Background(), seq)
			if err != nil {
				break
			}
			e, err := events.Decode(m.Data)
			if err == nil && e.Type == events.TypeAlertClaimed {
				continue // each attempt's claim, before it
			}
			var a events.AlertAttempt
			if err != nil || e.Type != events.TypeAlertAttempted || e.Payload(&a) != nil || e.Cause != down.ID ||
				m.Subject != events.AlertClaimSubject("oncall", a.Delivery, a.Attempt) {
				t.Fatalf("ALERTS holds %s %s", m.Subject, m.Data)
			}
			attempts = append(attempts, a)
		}
		return len(attempts) == 3
	}, "three attempts on ALERTS: %+v", &attempts)

	for i, want := range []struct {
		result string
		status int
	}{{events.AlertFailed, 500}, {events.AlertFailed, 500}, {events.AlertDelivered, 200}} {
		a := attempts[i]
		if a.Attempt != i+1 || a.Result != want.result || a.HTTPStatus != want.status || a.Delivery != attempts[0].Delivery || a.Kind != config.AlertPoolDown {
			t.Errorf("attempt %d = %+v, want attempt %d %s %d of one pool_down delivery", i, a, i+1, want.result, want.status)
		}
		if strings.Contains(a.Webhook, "query-secret") {
			t.Errorf("attempt %d names the webhook with its query: %q", i, a.Webhook)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.requests != 3 || len(rc.accepted) != 1 {
		t.Fatalf("the receiver saw %d requests and accepted %d, want 3 and exactly 1", rc.requests, len(rc.accepted))
	}
	body, h := rc.accepted[0], rc.headers[0]
	if err := alert.Verify(secret, h.Get(alert.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		t.Errorf("signature of the accepted delivery: %v", err)
	}
	if err := alert.Verify("another secret", h.Get(alert.HeaderSignature), body, time.Now(), 5*time.Minute); err == nil {
		t.Error("the signature verifies with another secret")
	}
	if err := alert.Verify(secret, h.Get(alert.HeaderSignature), append(body, ' '), time.Now(), 5*time.Minute); err == nil {
		t.Error("the signature verifies for a changed body")
	}
	var p alert.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Alert != "oncall" || p.Kind != config.AlertPoolDown || p.App != "shop" || p.Pool != "west" || p.To != "down" || p.EventID != down.ID {
		t.Errorf("payload = %+v", p)
	}
	if h.Get(alert.HeaderAttempt) != "3" || h.Get(alert.HeaderDelivery) != attempts[0].Delivery {
		t.Errorf("headers: attempt %q delivery %q", h.Get(alert.HeaderAttempt), h.Get(alert.HeaderDelivery))
	}
}

func TestAnAlertIsAbandonedWhenRetryForRunsOut(t *testing.T) {
	rc := &receiver{fails: 1000}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	d := strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1)
	d = strings.Replace(d, ", secret_env: DETOUR_TEST_HOOK_SECRET}]", "}]\n    retry_for: 100ms", 1)
	cfg := eventstest.Config(t, d)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 20 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	alerts := ns.Stream(t, events.StreamAlerts)
	var last events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool {
		m, err := alerts.GetLastMsgForSubject(context.Background(), events.AlertSubject("oncall")+".>")
		if err != nil {
			return false
		}
		e, _ := events.Decode(m.Data)
		_ = e.Payload(&last)
		return last.Result == events.AlertAbandoned
	}, "an abandoned attempt: last %+v", &last)
	if last.Attempt < 2 || last.Attempt > 5 || last.HTTPStatus != 500 {
		t.Errorf("abandoned at attempt %d (status %d), want after 2 to 5 attempts within 100ms at 20ms, 40ms, 80ms backoff", last.Attempt, last.HTTPStatus)
	}
}

func TestClassifyTellsAFailoverFromAPoolDownThatChangesNoAnswer(t *testing.T) {
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"http://127.0.0.1:1/"`, 1))
	v := state.NewView()
	apply := func(seq uint64, subject, typ string, tr events.Transition) alert.Fact {
		e, err := events.New(typ, "test", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := alert.Classify(cfg, v, subject, seq, e)
		return f
	}
	// east goes down while west serves: the answer stays west's.
	f := apply(1, events.PoolStateSubject("shop", "east"), events.TypePoolDown, events.Transition{App: "shop", Pool: "east", To: events.StatusDown})
	if strings.Join(f.Kinds, ",") != "transition,pool_down" {
		t.Errorf("east down: kinds %v, want transition,pool_down", f.Kinds)
	}
	apply(2, events.EndpointStateSubject("shop", "east", "e1"), events.TypeEndpointDown, events.Transition{App: "shop", Pool: "east", Endpoint: "e1", To: events.StatusDown})
	apply(3, events.PoolStateSubject("shop", "east"), events.TypePoolUp, events.Transition{App: "shop", Pool: "east", To: events.StatusUp})
	apply(4, events.EndpointStateSubject("shop", "east", "e1"), events.TypeEndpointUp, events.Transition{App: "shop", Pool: "east", Endpoint: "e1", To: events.StatusUp})
	// w1 going down moves the answer to east: that transition is the failover.
	f = apply(5, events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointDown, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown})
	if strings.Join(f.Kinds, ",") != "transition,failover" || f.Answer != "127.0.0.12" {
		t.Errorf("w1 down: kinds %v answer %q, want a failover to 127.0.0.12", f.Kinds, f.Answer)
	}
	if k := alert.Matches(&cfg.Alerts[0], f); k != config.AlertFailover {
		t.Errorf("the group on [pool_down, failover] matches %q, want failover", k)
	}
	f = apply(6, events.PoolStateSubject("shop", "west"), events.TypePoolDown, events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	if strings.Join(f.Kinds, ",") != "transition,pool_down" {
		t.Errorf("west down after w1: kinds %v, want transition,pool_down (the answer moved already)", f.Kinds)
	}
	if k := alert.Matches(&cfg.Alerts[0], f); k != config.AlertPoolDown {
		t.Errorf("the group on [pool_down, failover] matches %q, want pool_down", k)
	}
	f = apply(5, events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointDown, events.Transition{})
	if len(f.Kinds) != 0 {
		t.Errorf("an event already applied is classified again: %v", f.Kinds)
	}
	f.Transition = events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: events.StatusUp, To: events.StatusDown}
	f.Answer = "127.0.0.12"
	if got := alert.Text(config.AlertFailover, f); got != "failover: shop/west/w1 up → down; shop now answers 127.0.0.12" {
		t.Errorf("text %q", got)
	}
}

// TestAlertsAreSentOnceStateExistsWhenItDidNotAtStart starts the alert sender before any stream
// exists, as the controller may at a cluster's start (it creates STATE itself, meanwhile): it
// must wait for STATE, not give up and leave the controller without alerts.
func TestAlertsAreSentOnceStateExistsWhenItDidNotAtStart(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "x")
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	followsSTATE(t, ns, 10*time.Second, "once it exists")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	rc.waitAccepted(t, 5*time.Second, "the pool_down delivered")
}

func TestAWebhookIsRetriedOnTimeWhileALERTSElectsALeader(t *testing.T) {
	rc := &receiver{fails: 1}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.alert.", true)
	cfg := eventstest.Config(t, strings.Replace(strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1), ", secret_env: DETOUR_TEST_HOOK_SECRET}]", "}]", 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: js, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	// ALERTS, where the attempts are recorded, has no leader: the webhook's retry does not wait
	// for the failed attempt to be recorded.
	js.On.Store(true)
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	rc.waitAccepted(t, 10*time.Second, "the alert delivered on its second attempt")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if gap := rc.at[1].Sub(rc.at[0]); gap > time.Second {
		t.Errorf("the second attempt came %s after the first, want the 10ms backoff (within 1s): it waited for ALERTS", gap.Round(time.Millisecond))
	}
}

func TestAlertsStartWhileDRILLSElectsALeader(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.drill.", true)
	js.StreamName = events.StreamDrills
	d := strings.Replace(strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1), ", secret_env: DETOUR_TEST_HOOK_SECRET}]", "}]", 1)
	cfg := eventstest.Config(t, strings.Replace(d, "on: [pool_down, failover]", "on: [pool_down, failover, drill_result]", 1))

	// The sender starts while DRILLS has no leader: it waits for it rather than fail.
	js.On.Store(true)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: js, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the sender asks for DRILLS")
	js.On.Store(false)

	followsSTATE(t, ns, 10*time.Second, "once DRILLS has a leader")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	rc.waitAccepted(t, 5*time.Second, "the pool_down alert delivered")
}

func TestAWebhookWhoseURLIsInTheEnvironmentIsDeliveredAndNamedWithoutIt(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s3cret-for-the-hook")
	t.Setenv("DETOUR_TEST_HOOK_URL", hook.URL+"/services/T0/B0/Zx9aB3cD4eF5gH6i")
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "url: %q", "url_env: DETOUR_TEST_HOOK_URL", 1))
	if cfg.Alerts[0].Webhooks[0].URL != "" {
		t.Fatalf("the configuration holds the URL %q", cfg.Alerts[0].Webhooks[0].URL)
	}
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	rc.waitAccepted(t, 5*time.Second, "the webhook named by $DETOUR_TEST_HOOK_URL to accept the pool_down")

	m, err := ns.Stream(t, events.StreamAlerts).GetLastMsgForSubject(context.Background(), events.AlertSubject("oncall")+".>")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), "Zx9aB3cD4eF5gH6i") || !strings.Contains(string(m.Data), hook.URL) {
		t.Errorf("the attempt names the webhook with its token, or not by its host: %s", m.Data)
	}
}

// tempCredentialDirs allows the files the tests write, in their temporary directories.
func tempCredentialDirs(t *testing.T) config.CredentialDirs {
	t.Helper()
	d, err := config.NewCredentialDirs(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Whoever applies a configuration names a webhook's files; the controller's operator names the
// directories they may be in. A secret file elsewhere stops the sender at start, unread: else
// any file the controller can read could sign deliveries to a URL of the applier's choosing,
// an oracle for guesses of what it holds.
func TestAWebhookFileOutsideTheCredentialDirectoriesStopsTheSenderAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hook.key")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := eventstest.Config(t, strings.Replace(doc, "url: %q, secret_env: DETOUR_TEST_HOOK_SECRET", "url: \"https://hooks.example.com/x\", secret_file: "+file, 1))
	if err := alert.CheckHooks(cfg, tempCredentialDirs(t)); err != nil {
		t.Fatalf("inside the credential directories: %v", err)
	}
	err := alert.CheckHooks(cfg, config.CredentialDirs{})
	if want := "alerts[0].webhooks[0]: webhook secret_file: " + file + " is not in a credential directory of this process (none)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want an error starting %q", err, want)
	}
}

func TestAWebhookURLThatCannotBeReadStopsTheSenderAtStart(t *testing.T) {
	cfg := eventstest.Config(t, strings.Replace(doc, "url: %q", "url_env: DETOUR_TEST_UNSET_HOOK_URL", 1))
	err := alert.CheckHooks(cfg, config.CredentialDirs{})
	if want := "alerts[0].webhooks[0]: webhook url_env: $DETOUR_TEST_UNSET_HOOK_URL is not set in this process's environment"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

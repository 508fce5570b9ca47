package alert_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
)

// throttled answers the first request 429 with Retry-After, as Slack and most webhook receivers
// do when rate-limited, and accepts the rest.
type throttled struct {
	receiver
	retryAfter string
}

func (h *throttled) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	first := h.requests == 0
	h.mu.Unlock()
	if first {
		h.mu.Lock()
		h.requests++
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
		w.Header().Set("Retry-After", h.retryAfter)
		http.Error(w, "rate limited", http.StatusTooManyRequests)
		return
	}
	h.receiver.ServeHTTP(w, r)
}

// TestAWebhookThatAnswers429WithRetryAfterIsNotAskedAgainBeforeIt: a receiver that is rate
// limiting answers 429 and says when to come back (Retry-After: 1, a second). The sender waits
// that long before its retry, not its own backoff (10 ms here), and ALERTS records the wait.
func TestAWebhookThatAnswers429WithRetryAfterIsNotAskedAgainBeforeIt(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s3cret-for-the-hook")
	rc := &throttled{retryAfter: "1"}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`/hooks/detour"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	rc.waitAccepted(t, 10*time.Second, "the alert delivered after the 429")

	rc.mu.Lock()
	gap := rc.at[1].Sub(rc.at[0])
	rc.mu.Unlock()
	if gap < time.Second {
		t.Errorf("the retry came %s after the 429 that asked for a second (Retry-After: 1)", gap)
	}
	var failed events.AlertAttempt
	alerts := ns.Stream(t, events.StreamAlerts)
	for seq := uint64(1); ; seq++ {
		m, err := alerts.GetMsg(context.Background(), seq)
		if err != nil {
			break
		}
		var a events.AlertAttempt
		if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeAlertAttempted && e.Payload(&a) == nil && a.Result == events.AlertFailed {
			failed = a
		}
	}
	if failed.HTTPStatus != http.StatusTooManyRequests || failed.RetryInMS != 1000 {
		t.Errorf("the failed attempt is recorded %+v, want status 429 and a retry in 1000 ms", failed)
	}
}

package alert_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/services/alert"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
)

// attemptMetrics is what a scrape of m's /metrics shows of the alert sender: each
// detour_alert_attempts_total series by "group result reason", and the attempts timed in
// detour_alert_attempt_duration_seconds by group; text is the whole scrape.
type attemptMetrics struct {
	attempts map[string]float64
	timed    map[string]uint64
	text     string
}

func scrapeAlerts(t *testing.T, m *metrics.Metrics) attemptMetrics {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := attemptMetrics{attempts: map[string]float64{}, timed: map[string]uint64{}, text: text}
	for _, s := range fams["detour_alert_attempts_total"].GetMetric() {
		ls := map[string]string{}
		for _, l := range s.GetLabel() {
			ls[l.GetName()] = l.GetValue()
		}
		out.attempts[ls["group"]+" "+ls["result"]+" "+ls["reason"]] = s.GetCounter().GetValue()
	}
	for _, s := range fams["detour_alert_attempt_duration_seconds"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "group" {
				out.timed[l.GetValue()] = s.GetHistogram().GetSampleCount()
			}
		}
	}
	return out
}

// TestAWebhookAnswering500Then200ShowsOneFailedAttemptAndOneDeliveredInTheMetrics: an operator
// alerting on alerting itself reads, for the group, the attempt that failed with its status
// class, the one delivered, both timed, and, from the start, every series of the group at zero
// (one that appeared at its first count would show no increase). No series names the webhook's
// URL, which holds its token.
func TestAWebhookAnswering500Then200ShowsOneFailedAttemptAndOneDeliveredInTheMetrics(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s3cret-for-the-hook")
	rc := &receiver{fails: 1}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`/hooks/detour?token=query-secret"`, 1))
	m := metrics.New()
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	before := scrapeAlerts(t, m)
	for _, series := range []string{"oncall delivered ", "oncall failed 5xx", "oncall abandoned 5xx", "oncall abandoned timeout",
		"oncall abandoned superseded", "oncall abandoned queue_full"} {
		if n, ok := before.attempts[series]; !ok || n != 0 {
			t.Errorf("before any alert, detour_alert_attempts_total{%s} = %v (shown: %t), want 0 shown", series, n, ok)
		}
	}
	if n, ok := before.timed["oncall"]; !ok || n != 0 {
		t.Errorf("before any alert, detour_alert_attempt_duration_seconds{group=oncall} counts %d (shown: %t), want 0 shown", n, ok)
	}

	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown, Reason: "w1 down"})
	rc.waitAccepted(t, 5*time.Second, "the alert delivered after the 500")
	var got attemptMetrics
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = scrapeAlerts(t, m)
		return got.attempts["oncall delivered "] == 1
	}, "detour_alert_attempts_total shows no delivered attempt: %v", &got.attempts)

	for series, n := range got.attempts {
		want := 0.0
		if series == "oncall failed 5xx" || series == "oncall delivered " {
			want = 1
		}
		if n != want {
			t.Errorf("detour_alert_attempts_total{%s} = %v, want %v", series, n, want)
		}
	}
	if got.timed["oncall"] != 2 {
		t.Errorf("detour_alert_attempt_duration_seconds{group=oncall} counts %d attempts, want 2", got.timed["oncall"])
	}
	for _, secret := range []string{"query-secret", strings.TrimPrefix(hook.URL, "http://")} {
		if strings.Contains(got.text, secret) {
			t.Errorf("/metrics shows %q of the webhook's URL", secret)
		}
	}
}

// TestAnAlertAbandonedWhenRetryForRunsOutShowsOnceInTheMetricsWithItsLastReason: the signal an
// operator pages on, an alert a webhook never got, is one abandoned attempt with the status class
// of the last answer, after the failed ones; every attempt sent is timed.
func TestAnAlertAbandonedWhenRetryForRunsOutShowsOnceInTheMetricsWithItsLastReason(t *testing.T) {
	rc := &receiver{fails: 1000}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	d := strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1)
	d = strings.Replace(d, ", secret_env: DETOUR_TEST_HOOK_SECRET}]", "}]\n    retry_for: 100ms", 1)
	cfg := eventstest.Config(t, d)
	m := metrics.New()
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 20 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	transition(t, ns.JS, events.PoolStateSubject("shop", "west"), events.TypePoolDown,
		events.Transition{App: "shop", Pool: "west", From: events.StatusUp, To: events.StatusDown})
	var got attemptMetrics
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = scrapeAlerts(t, m)
		return got.attempts["oncall abandoned 5xx"] == 1
	}, "detour_alert_attempts_total shows no abandoned attempt: %v", &got.attempts)

	rc.mu.Lock()
	requests := rc.requests
	rc.mu.Unlock()
	if failed := got.attempts["oncall failed 5xx"]; failed != float64(requests-1) || requests < 2 {
		t.Errorf("detour_alert_attempts_total{oncall failed 5xx} = %v after %d requests, want all but the last", failed, requests)
	}
	if got.attempts["oncall delivered "] != 0 {
		t.Errorf("detour_alert_attempts_total{oncall delivered} = %v, want 0", got.attempts["oncall delivered "])
	}
	if got.timed["oncall"] != uint64(requests) {
		t.Errorf("detour_alert_attempt_duration_seconds{group=oncall} counts %d attempts, want the %d sent", got.timed["oncall"], requests)
	}
}

// TestAGroupAVersionRemovedShowsNoSeriesInTheMetrics: a version that renames a group (oncall →
// pager) shows pager's series at zero from then on, and no more of oncall's: the series of every
// group a controller was ever given stayed until it restarted, 37 a group, at their last values.
func TestAGroupAVersionRemovedShowsNoSeriesInTheMetrics(t *testing.T) {
	hook := serve(t, &receiver{})
	ns := eventstest.Start(t)
	m := metrics.New()
	configs := make(chan *config.Config)
	logs := &eventstest.Logs{}
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: version(t, 1, group("oncall", hook.URL, "")), Configs: configs,
			Name: "controller-1", Log: zerolog.New(logs), Metrics: m})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, ok := scrapeAlerts(t, m).attempts["oncall abandoned 5xx"]
		return ok
	}, "oncall's series to show at 0")
	configs <- version(t, 2, group("pager", hook.URL, ""))
	applied(t, logs, followsVersion, 1)
	got := scrapeAlerts(t, m)
	for series := range got.attempts {
		if strings.HasPrefix(series, "oncall ") {
			t.Errorf("after the version that removed oncall, /metrics shows detour_alert_attempts_total{%s}", series)
		}
	}
	if _, ok := got.timed["oncall"]; ok {
		t.Errorf("after the version that removed oncall, /metrics shows detour_alert_attempt_duration_seconds{group=oncall}")
	}
	if n, ok := got.attempts["pager abandoned 5xx"]; !ok || n != 0 {
		t.Errorf("after the version, detour_alert_attempts_total{pager abandoned 5xx} = %v (shown: %t), want 0 shown", n, ok)
	}
}

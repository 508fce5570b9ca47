package up_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/up"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads every metric family the stack serves on /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sum adds the values of the family's series whose labels include every pair in match.
func sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) (total float64, histCount uint64) {
	f := fams[name]
	if f == nil {
		return 0, 0
	}
series:
	for _, m := range f.GetMetric() {
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += m.Histogram.GetSampleSum()
			histCount += m.Histogram.GetSampleCount()
		}
	}
	return total, histCount
}

func TestMetricsAfterAFailoverShowTheTransitionTheQueriesAndTheFailoverTime(t *testing.T) {
	st, west, east := slice(t, func(o *up.Options) { o.MetricsAddr = "127.0.0.1:0" })
	waitAnswer(t, st, host(west.Addr()), 5*time.Second, "at start")
	// West is answered before any check (an app's first pool serves until STATE says otherwise),
	// but a failover is timed only from up: killed before its rise-th success, west would go from
	// unknown to down, which the histogram rightly leaves out. So wait for both endpoints' up.
	var ups string
	eventstest.Eventually(t, interval*(rise+4), func() bool {
		n, _ := sum(scrape(t, st.MetricsAddr), "detour_transitions_total", map[string]string{"kind": "endpoint", "to": "up"})
		ups = fmt.Sprint(n)
		return n == 2
	}, "detour_transitions_total{kind=endpoint,to=up} is %v, want 2 (west and east)", lazy{&ups})
	before := scrape(t, st.MetricsAddr)
	downsBefore, _ := sum(before, "detour_transitions_total", map[string]string{"kind": "endpoint", "to": "down"})
	queriesBefore, _ := sum(before, "detour_dns_queries_total", map[string]string{"rcode": "NOERROR", "type": "A"})
	_, failoversBefore := sum(before, "detour_failover_seconds", nil)

	west.Close()
	waitAnswer(t, st, host(east.Addr()), interval*fall+time.Second, "after the west backend died")
	// The decider counts a transition and times the failover once JetStream has acknowledged its
	// append, and the DNS server may serve the change before that acknowledgement arrives: wait
	// for both, then hold them to one more each.
	var after map[string]*dto.MetricFamily
	var seen string
	eventstest.Eventually(t, 2*time.Second, func() bool {
		after = scrape(t, st.MetricsAddr)
		downs, _ := sum(after, "detour_transitions_total", map[string]string{"kind": "endpoint", "to": "down"})
		_, n := sum(after, "detour_failover_seconds", nil)
		seen = fmt.Sprintf("%v downs and %d failovers", downs, n)
		return downs > downsBefore && n > failoversBefore
	}, "after the failover the metrics show %v, want more than %v downs and %d failovers", lazy{&seen}, downsBefore, failoversBefore)
	if downs, _ := sum(after, "detour_transitions_total", map[string]string{"kind": "endpoint", "to": "down"}); downs != downsBefore+1 {
		t.Errorf("detour_transitions_total{kind=endpoint,to=down} went from %v to %v, want one more", downsBefore, downs)
	}
	if q, _ := sum(after, "detour_dns_queries_total", map[string]string{"rcode": "NOERROR", "type": "A"}); q <= queriesBefore {
		t.Errorf("detour_dns_queries_total{rcode=NOERROR,type=A} did not move: %v then %v", queriesBefore, q)
	}
	secs, n := sum(after, "detour_failover_seconds", nil)
	if n != failoversBefore+1 {
		t.Fatalf("detour_failover_seconds has %d observations, want %d", n, failoversBefore+1)
	}
	t.Logf("failover time by the histogram: %.3fs", secs)
	// The first failed check can come up to one interval after the kill; the transition follows
	// the fall-th failure.
	if lo, hi := (interval * (fall - 1)).Seconds(), (interval*fall + time.Second).Seconds(); secs < lo*0.8 || secs > hi {
		t.Errorf("failover took %.3fs by the histogram, want between %.3fs and %.3fs", secs, lo*0.8, hi)
	}
	if failed, _ := sum(after, "detour_probes_total", map[string]string{"app": "shop", "result": "refused"}); failed < fall {
		t.Errorf("detour_probes_total{app=shop,result=refused} = %v, want at least %d", failed, fall)
	}
	if _, n := sum(after, "detour_check_duration_seconds", map[string]string{"app": "shop"}); n == 0 {
		t.Error("detour_check_duration_seconds has no observations")
	}
	if serial, _ := sum(after, "detour_dns_zone_serial", map[string]string{"zone": "demo.test."}); serial == 0 {
		t.Error("detour_dns_zone_serial{zone=demo.test.} is not set")
	}
	if _, ok := after["detour_consumer_lag_messages"]; !ok {
		t.Error("detour_consumer_lag_messages is not exported")
	}
}

// TestDetourUpServesTheAlertSendersMetricsOnItsPort: `detour up` serves the alert sender's
// series on the one port of every role's: a group told about every transition counts the
// deliveries of the endpoints' first ups, and a failed or abandoned attempt would show beside
// them, at zero until one is.
func TestDetourUpServesTheAlertSendersMetricsOnItsPort(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(hook.Close)
	st, _, _ := slice(t, func(o *up.Options) {
		o.MetricsAddr = "127.0.0.1:0"
		f, err := os.OpenFile(o.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := fmt.Fprintf(f, "alerts:\n  - name: oncall\n    on: [transition]\n    webhooks: [{url: %q}]\n", hook.URL); err != nil {
			t.Fatal(err)
		}
	})
	var delivered string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		n, _ := sum(scrape(t, st.MetricsAddr), "detour_alert_attempts_total", map[string]string{"group": "oncall", "result": "delivered"})
		delivered = fmt.Sprint(n)
		return n >= 2
	}, "detour_alert_attempts_total{group=oncall,result=delivered} is %v, want the ups of west and east", lazy{&delivered})
	fams := scrape(t, st.MetricsAddr)
	if n, _ := sum(fams, "detour_alert_attempts_total", map[string]string{"group": "oncall", "result": "abandoned"}); n != 0 {
		t.Errorf("detour_alert_attempts_total{group=oncall,result=abandoned} = %v, want 0", n)
	}
	if _, timed := sum(fams, "detour_alert_attempt_duration_seconds", map[string]string{"group": "oncall"}); timed < 2 {
		t.Errorf("detour_alert_attempt_duration_seconds{group=oncall} timed %d attempts, want the 2 delivered at least", timed)
	}
}

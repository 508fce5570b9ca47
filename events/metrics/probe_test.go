package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAProbeSeriesCountsAsTheLabelsWouldAndShowsOnlyWhatHappened(t *testing.T) {
	m := New()
	s := m.ProbeSeries("shop", "west")
	if n := testutil.CollectAndCount(m.Probes) + testutil.CollectAndCount(m.CheckDuration); n != 0 {
		t.Fatalf("%d series before any probe, want none", n)
	}
	for _, r := range []string{"ok", "refused", "refused", "timeout", "ok", "refused", "ok"} {
		s.Probe(r, 0.002)
	}
	m.ProbeSeries("api", "west").Probe("ok", 0.5)
	var nilSeries *Metrics
	nilSeries.ProbeSeries("shop", "west").Probe("ok", 1) // no metrics: nothing counted, no panic

	want := `
# HELP detour_probes_total Health checks completed, by app, probing region and result class (ok, or the error class: timeout, refused, status, …).
# TYPE detour_probes_total counter
detour_probes_total{app="api",region="west",result="ok"} 1
detour_probes_total{app="shop",region="west",result="ok"} 3
detour_probes_total{app="shop",region="west",result="refused"} 3
detour_probes_total{app="shop",region="west",result="timeout"} 1
`
	if err := testutil.CollectAndCompare(m.Probes, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.CheckDuration); got != 2 {
		t.Errorf("%d check-duration series, want 2 (shop and api)", got)
	}
}

// BenchmarkProbeSeries counts results of 10,000 apps' checks in turn through their series, and
// by label values on every result as the prober did before.
func BenchmarkProbeSeries(b *testing.B) {
	const apps = 10000
	names := make([]string, apps)
	for i := range names {
		names[i] = fmt.Sprintf("app-%05d", i)
	}
	b.Run("series", func(b *testing.B) {
		m := New()
		ss := make([]*ProbeSeries, apps)
		for i, a := range names {
			ss[i] = m.ProbeSeries(a, "west")
			ss[i].Probe("ok", 0.001)
		}
		i := 0
		for b.Loop() {
			ss[i%apps].Probe("ok", 0.0003)
			i++
		}
	})
	b.Run("labels", func(b *testing.B) {
		m := New()
		probe := func(app, result string, seconds float64) {
			m.Probes.WithLabelValues(app, "west", result).Inc()
			m.CheckDuration.WithLabelValues(app, "west").Observe(seconds)
		}
		for _, a := range names {
			probe(a, "ok", 0.001)
		}
		i := 0
		for b.Loop() {
			probe(names[i%apps], "ok", 0.0003)
			i++
		}
	})
}

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "no samples", q: 0.99, want: 0},
		{name: "one sample is every percentile", sorted: ms(7), q: 0.99, want: 7 * time.Millisecond},
		{name: "p50 of four is the second", sorted: ms(1, 2, 3, 4), q: 0.5, want: 2 * time.Millisecond},
		{name: "p99 of 1..100 is 99", sorted: ms(hundred...), q: 0.99, want: 99 * time.Millisecond},
		{name: "p100 is the largest", sorted: ms(1, 2, 3), q: 1, want: 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("percentile = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTheReportComparesWithHAProxyAndDirect(t *testing.T) {
	closed := []result{
		{name: "direct", requests: 20000, elapsed: time.Second, p99: time.Millisecond},
		{name: "detour-edge", requests: 9000, elapsed: time.Second, p99: 2500 * time.Microsecond},
		{name: "haproxy", requests: 10000, elapsed: time.Second, p99: 1500 * time.Microsecond},
	}
	fixed := []result{
		{name: "direct", requests: 5000, elapsed: time.Second, p99: 300 * time.Microsecond},
		{name: "detour-edge", requests: 5000, elapsed: time.Second, p99: 1800 * time.Microsecond},
		{name: "haproxy", requests: 5000, elapsed: time.Second, p99: 500 * time.Microsecond},
	}
	var b bytes.Buffer
	report(&b, closed, fixed, benchOptions{conns: 32, duration: time.Second, warmup: time.Second, body: 1024, rounds: 1, rate: 5000})
	out := b.String()
	for _, want := range []string{
		"throughput detour-edge / haproxy = 0.90 (target >= 0.90): met",
		"p99 overhead of detour-edge over direct at 5000 req/s = 1.500 ms (target < 1 ms): NOT met",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestBadRoleIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-role", "frontend"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), `-role: want backend or edge, got "frontend"`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestMedianTakesEachFigureOnItsOwnAndSumsErrors(t *testing.T) {
	ms := time.Millisecond
	got := median([]result{
		{name: "nginx", requests: 300, elapsed: time.Second, p50: 3 * ms, p99: 1 * ms, errors: 1},
		{name: "nginx", requests: 100, elapsed: time.Second, p50: 1 * ms, p99: 9 * ms},
		{name: "nginx", requests: 200, elapsed: time.Second, p50: 2 * ms, p99: 5 * ms, errors: 2},
	})
	if got.name != "nginx" || got.rps() != 200 || got.p50 != 2*ms || got.p99 != 5*ms || got.errors != 3 {
		t.Errorf("median = %+v (%.0f req/s), want 200 req/s, p50 2ms, p99 5ms, 3 errors", got, got.rps())
	}
}

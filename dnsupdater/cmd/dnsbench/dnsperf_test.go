package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestParseDNSPerfReadsLatenciesAndTheSummary(t *testing.T) {
	out := `[Status] Sending queries (to 127.0.0.1:5353)
> NOERROR shop.demo.test A 0.000284
> NOERROR www.demo.test A 0.0001
> NOERROR api.demo.test A 1.5
> NOERROR api.demo.test A garbage
Statistics:

  Queries sent:         103789
  Queries lost:         12 (0.01%)
  Queries per second:   103070.393218
`
	r, lat := parseDNSPerf(bufio.NewScanner(strings.NewReader(out)))
	if r.qps != 103070.393218 || r.lost != 0.01 {
		t.Errorf("summary: want 103070.393218 qps and 0.01%% lost, got %v and %v", r.qps, r.lost)
	}
	want := []int32{284, 100, 1500000}
	if len(lat) != len(want) {
		t.Fatalf("latencies: want %v, got %v", want, lat)
	}
	for i := range want {
		if lat[i] != want[i] {
			t.Errorf("latency %d: want %d µs, got %d", i, want[i], lat[i])
		}
	}
}

func TestParseDNSPerfReadsARunThatAnsweredNothingAsZero(t *testing.T) {
	out := `Statistics:

  Queries sent:         0
  Queries completed:    0 (nan%)
  Queries lost:         0 (nan%)
  Queries per second:   nan
`
	r, lat := parseDNSPerf(bufio.NewScanner(strings.NewReader(out)))
	if r.qps != 0 || r.lost != 0 || len(lat) != 0 {
		t.Errorf("want 0 qps, 0 %% lost and no latencies, got %v, %v and %v", r.qps, r.lost, lat)
	}
}

func TestTreeCPUCountsThisProcess(t *testing.T) {
	// Burn some CPU, then this process must show at least a clock tick of it.
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	if got := treeCPU(os.Getpid()); got < clockTick {
		t.Errorf("want at least %s of CPU for this process, got %s (%d)", clockTick, got, x)
	}
}

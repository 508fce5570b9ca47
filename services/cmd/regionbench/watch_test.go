package main

import (
	"testing"
	"time"
)

func TestDNSPerfRatesAreReadFromItsPeriodicLinesOnly(t *testing.T) {
	for line, want := range map[string]float64{
		"1764547200.250000: 9987.123456": 9987.123456,
		"  1764547201.250000: 10001.5":   10001.5,
		"Statistics:":                    -1,
		"  Queries per second:   9980.1": -1,
		"12: 5":                          -1,
	} {
		s, ok := parseSample(line)
		if want < 0 {
			if ok {
				t.Errorf("parseSample(%q) = %+v, want no sample", line, s)
			}
			continue
		}
		if !ok || s.qps != want {
			t.Errorf("parseSample(%q) = %+v, %v; want %v qps", line, s, ok, want)
		}
	}
}

func TestTheStormRateWeighsEachSecondByItsOverlapWithTheWindow(t *testing.T) {
	t0 := time.Unix(1764547200, 0)
	r := &dnsperfRun{done: make(chan error, 1), samples: []rateSample{
		{t0.Add(time.Second), 1000}, {t0.Add(2 * time.Second), 2000}, {t0.Add(3 * time.Second), 4000}}}
	r.done <- nil
	// Half of the second second and all of the third: (0.5 × 2000 + 1 × 4000) / 1.5.
	got, err := r.wait(t0.Add(1500*time.Millisecond), t0.Add(3*time.Second))
	if err != nil || got != 5000.0/1.5 {
		t.Errorf("wait = %v, %v; want %v", got, err, 5000.0/1.5)
	}
}

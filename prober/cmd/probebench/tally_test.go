package main

import (
	"os"
	"testing"
	"time"

	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/prober/benchenv"
)

func TestTallyCountsEachWindowOnceAndJudgesLateness(t *testing.T) {
	const key = "tcp/p/127-1-1-1_9000"
	iv, j := time.Second, 100*time.Millisecond
	slot := func(n int64) time.Time { return prober.SlotTime(key, iv, j, n) }
	tl := newTally([]string{key, "tcp/p/other"}, iv, j, 50*time.Millisecond, 10, 14)
	tl.record(key, slot(10).Add(time.Millisecond), true, "")     // on time
	tl.record(key, slot(10).Add(2*time.Millisecond), true, "")   // the same window again
	tl.record(key, slot(11).Add(80*time.Millisecond), true, "")  // late
	tl.record(key, slot(12), false, "tcp timeout")               // failed
	tl.record(key, slot(13).Add(400*time.Millisecond), true, "") // very late, still window 13
	tl.record(key, slot(14), true, "")                           // outside the measured windows
	tl.record("tcp/p/unknown", slot(12), true, "")               // not a benchmark endpoint
	s := tl.summary()
	if s.expected != 8 || s.ran != 4 || s.ok != 3 || s.onTime != 1 || s.duplicate != 1 {
		t.Errorf("summary %+v, want 8 due, 4 ran, 3 ok, 1 on time, 1 duplicate", s)
	}
	if s.failures["tcp timeout"] != 1 || s.worst != 400*time.Millisecond {
		t.Errorf("failures %v worst %s", s.failures, s.worst)
	}
	if got := s.share(); got != 1.0/8 {
		t.Errorf("share %v, want 1/8", got)
	}
}

func TestCPUTimeAndPeakMemoryOfThisProcessAreRead(t *testing.T) {
	c, err := benchenv.CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, err := benchenv.PeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c < 0 || rss < 1<<20 {
		t.Errorf("cpu %s, peak rss %d: not this process's", c, rss)
	}
}

package main

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/prober"
)

// tally counts, for one contender, which checks of the measured windows ran, how late each
// started, and whether it succeeded.
type tally struct {
	interval, jitter, tolerance time.Duration
	from, to                    int64 // measured windows: [from, to)

	mu        sync.Mutex
	runs      map[string][]uint8 // per key and window: runs seen
	late      []time.Duration
	onTime    int
	ok        int
	duplicate int
	keys      int
	failures  map[string]int // by error class
	firstErr  error
}

// note keeps the first error of the driver, for the report.
func (t *tally) note(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstErr == nil {
		t.firstErr = err
	}
}

func newTally(keys []string, interval, jitter, tolerance time.Duration, from, to int64) *tally {
	t := &tally{interval: interval, jitter: jitter, tolerance: tolerance, from: from, to: to,
		runs: make(map[string][]uint8, len(keys)), keys: len(keys), failures: map[string]int{}}
	for _, k := range keys {
		t.runs[k] = make([]uint8, to-from)
	}
	return t
}

// window returns the window whose instant for key is the latest at or before start.
func (t *tally) window(key string, start time.Time) (int64, time.Time) {
	n := prober.Window(start, t.interval)
	at := prober.SlotTime(key, t.interval, t.jitter, n)
	if at.After(start) {
		n--
		at = prober.SlotTime(key, t.interval, t.jitter, n)
	}
	return n, at
}

// record notes that the check key started at start and succeeded, or failed with class.
func (t *tally) record(key string, start time.Time, ok bool, class string) {
	n, at := t.window(key, start)
	t.mu.Lock()
	defer t.mu.Unlock()
	w, known := t.runs[key]
	if !known || n < t.from || n >= t.to {
		return
	}
	w[n-t.from]++
	if w[n-t.from] > 1 {
		t.duplicate++
		return
	}
	late := start.Sub(at)
	t.late = append(t.late, late)
	if !ok {
		t.failures[class]++
	}
	if ok {
		t.ok++
		if late <= t.tolerance {
			t.onTime++
		}
	}
}

type summary struct {
	expected, ran, ok, onTime, duplicate int
	p50, p99, worst                      time.Duration
	failures                             map[string]int
	firstErr                             error
}

func (t *tally) summary() summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := summary{expected: t.keys * int(t.to-t.from), ran: len(t.late), ok: t.ok, onTime: t.onTime, duplicate: t.duplicate, failures: maps.Clone(t.failures), firstErr: t.firstErr}
	if len(t.late) > 0 {
		l := slices.Clone(t.late)
		slices.Sort(l)
		s.p50, s.p99, s.worst = l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
	}
	return s
}

func (s summary) share() float64 {
	if s.expected == 0 {
		return 0
	}
	return float64(s.onTime) / float64(s.expected)
}

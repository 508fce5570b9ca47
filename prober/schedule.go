package prober

import "time"

// Slot scheduling. Time is cut into windows of one interval, aligned to the Unix epoch; a check
// runs once in each window, at a fixed phase derived from its key plus a per-window jitter also
// derived from its key. Every worker computes the same instants, so when a check moves from one
// worker to another the new owner runs the next window's instant and never a second one in the
// same window: the endpoint is probed at most once per interval per region, whatever the number
// of workers.

// SlotTime returns the instant at which the check key runs in window n (the window that starts
// at n × interval since the Unix epoch). It lies within the window.
func SlotTime(key string, interval, jitter time.Duration, n int64) time.Time {
	if interval <= 0 {
		interval = time.Second
	}
	jitter = min(max(jitter, 0), interval-1)
	h := hashKey(key)
	span := uint64(interval - jitter) // the phase lies in [0, interval-jitter)
	off := time.Duration(h % span)
	if jitter > 0 {
		off += time.Duration(mix(h^uint64(n)) % uint64(jitter))
	}
	return time.Unix(0, n*int64(interval)+int64(off))
}

// Window returns the number of the window that holds t.
func Window(t time.Time, interval time.Duration) int64 {
	if interval <= 0 {
		interval = time.Second
	}
	ns := t.UnixNano()
	n := ns / int64(interval)
	if ns < 0 && ns%int64(interval) != 0 {
		n--
	}
	return n
}

// NextSlot returns the first window at or after now in which the check key is still to run,
// and its instant.
func NextSlot(key string, interval, jitter time.Duration, now time.Time) (int64, time.Time) {
	n := Window(now, interval)
	at := SlotTime(key, interval, jitter, n)
	if at.Before(now) {
		n++
		at = SlotTime(key, interval, jitter, n)
	}
	return n, at
}

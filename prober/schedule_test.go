package prober

import (
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

func TestEverySlotLiesWithinItsWindow(t *testing.T) {
	tests := []struct {
		interval, jitter time.Duration
	}{
		{time.Second, 100 * time.Millisecond},
		{time.Second, 0},
		{250 * time.Millisecond, 250 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{3 * time.Millisecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("interval %s jitter %s", tt.interval, tt.jitter), func(t *testing.T) {
			for _, k := range keys(500) {
				for _, n := range []int64{-3, 0, 1, 7, 1_000_000_000} {
					at := SlotTime(k, tt.interval, tt.jitter, n)
					if Window(at, tt.interval) != n {
						t.Fatalf("slot of %s in window %d is at %s, in window %d", k, n, at, Window(at, tt.interval))
					}
				}
			}
		})
	}
}

func TestWithoutJitterACheckRunsExactlyOneIntervalApart(t *testing.T) {
	for _, k := range keys(100) {
		a := SlotTime(k, time.Second, 0, 41)
		b := SlotTime(k, time.Second, 0, 42)
		if d := b.Sub(a); d != time.Second {
			t.Fatalf("%s runs %s apart, want 1s", k, d)
		}
	}
}

func TestJitterMovesTheInstantFromWindowToWindowWithinItsBound(t *testing.T) {
	k := "shop/west/a"
	varied := false
	for n := range int64(50) {
		at := SlotTime(k, time.Second, 200*time.Millisecond, n)
		off := at.Sub(time.Unix(0, n*int64(time.Second)))
		if off < 0 || off >= time.Second {
			t.Fatalf("window %d: offset %s outside the window", n, off)
		}
		if n > 0 && at.Sub(SlotTime(k, time.Second, 200*time.Millisecond, n-1)) != time.Second {
			varied = true
		}
	}
	if !varied {
		t.Error("jitter never changed the spacing between runs")
	}
}

func TestTwoRunsOfACheckAreNeverCloserThanIntervalLessJitter(t *testing.T) {
	iv, j := time.Second, 300*time.Millisecond
	for _, k := range keys(200) {
		for n := range int64(40) {
			if d := SlotTime(k, iv, j, n+1).Sub(SlotTime(k, iv, j, n)); d < iv-j {
				t.Fatalf("%s runs %s apart in windows %d and %d, want at least %s", k, d, n, n+1, iv-j)
			}
		}
	}
}

func TestChecksOfManyEndpointsAreSpreadOverTheInterval(t *testing.T) {
	const buckets = 10
	var count [buckets]int
	ks := keys(5000)
	for _, k := range ks {
		off := SlotTime(k, time.Second, 100*time.Millisecond, 0).Sub(time.Unix(0, 0))
		count[off*buckets/time.Second]++
	}
	for i, c := range count {
		fair := len(ks) / buckets
		if i == 0 || i == buckets-1 {
			// The phase spans the interval less the jitter, and the jitter adds to it: the first
			// and last jitter's worth of the window get half the density.
			fair /= 2
		}
		if c < fair*7/10 || c > fair*13/10 {
			t.Errorf("tenth %d of the interval holds %d of %d checks: not spread", i, c, len(ks))
		}
	}
}

func TestNextSlotIsTheFirstInstantNotYetPassed(t *testing.T) {
	const k = "shop/west/a"
	iv, j := time.Second, 100*time.Millisecond
	at5 := SlotTime(k, iv, j, 5)
	tests := []struct {
		name  string
		now   time.Time
		wantN int64
	}{
		{"at the start of the window", time.Unix(5, 0), 5},
		{"exactly at the instant", at5, 5},
		{"just after the instant", at5.Add(time.Nanosecond), 6},
		{"at the end of the window", time.Unix(6, 0).Add(-time.Nanosecond), 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, at := NextSlot(k, iv, j, tt.now)
			if n != tt.wantN || !at.Equal(SlotTime(k, iv, j, tt.wantN)) {
				t.Errorf("NextSlot = window %d at %s, want window %d", n, at, tt.wantN)
			}
			if at.Before(tt.now) {
				t.Errorf("next slot %s lies before now %s", at, tt.now)
			}
		})
	}
}

func TestTheDefaultHeartbeatFollowsTheShortestInterval(t *testing.T) {
	tests := []struct {
		intervals []time.Duration
		want      time.Duration
	}{
		{[]time.Duration{250 * time.Millisecond}, 100 * time.Millisecond},
		{[]time.Duration{900 * time.Millisecond, 5 * time.Second}, 300 * time.Millisecond},
		{[]time.Duration{5 * time.Second}, time.Second},
		{nil, time.Second},
	}
	for _, tt := range tests {
		var c config.Config
		for _, iv := range tt.intervals {
			c.Apps = append(c.Apps, config.App{Check: config.Check{Interval: config.Duration(iv)}})
		}
		if got := DefaultHeartbeat(&c); got != tt.want {
			t.Errorf("intervals %v: heartbeat %s, want %s", tt.intervals, got, tt.want)
		}
	}
}

func TestTheDefaultMemberTTLIsThreeHeartbeatsAndAtLeastASecond(t *testing.T) {
	tests := []struct {
		interval time.Duration
		want     time.Duration
	}{
		{100 * time.Millisecond, time.Second}, // heartbeat 100ms: a stall of 900ms, not 200ms, is survived
		{300 * time.Millisecond, time.Second},
		{time.Second, time.Second}, // heartbeat 333ms: 999ms before
		{3 * time.Second, 3 * time.Second},
		{time.Minute, 3 * time.Second},
	}
	for _, tt := range tests {
		c := config.Config{Apps: []config.App{{Check: config.Check{Interval: config.Duration(tt.interval)}}}}
		o := Options{Config: &c}
		_ = o.defaults() // refused for its missing fields, with the durations filled in
		if o.MemberTTL != tt.want {
			t.Errorf("interval %s: member ttl %s (heartbeat %s), want %s", tt.interval, o.MemberTTL, o.Heartbeat, tt.want)
		}
	}
}

// The fall-th check after a failure is at most interval × fall after it without jitter, and up
// to interval × fall + jitter with it: each window's instant moves by up to the jitter, so the
// span of fall windows after the last success can stretch by as much. At 10,000 endpoints some
// endpoint comes close to that bound whenever a region fails.
func TestTheFallthInstantAfterAFailureComesWithinIntervalTimesFallPlusTheJitter(t *testing.T) {
	const interval, fall = 10 * time.Second, 3
	for _, jitter := range []time.Duration{0, interval / 10} {
		worst := time.Duration(0)
		for i, k := range keys(10000) {
			failed := time.Unix(1_764_547_200, 0).Add(time.Duration(i) * 7919 * time.Microsecond)
			n, _ := NextSlot(k, interval, jitter, failed)
			worst = max(worst, SlotTime(k, interval, jitter, n+fall-1).Sub(failed))
		}
		if bound := fall*interval + jitter; worst > bound {
			t.Errorf("jitter %s: the %dth instant after a failure came %s after it, beyond interval × fall + jitter = %s", jitter, fall, worst, bound)
		}
		if jitter > 0 && worst <= fall*interval+jitter/2 {
			t.Errorf("jitter %s: the %dth instant came at most %s after a failure; want some beyond interval × fall + jitter/2, as per-window jitter stretches the span", jitter, fall, worst)
		}
	}
}

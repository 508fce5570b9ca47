package alert

import (
	"testing"
	"time"
)

// TestRetryAfterReadsSecondsAndDatesAndNothingElse: Retry-After is a number of seconds or an
// HTTP date (RFC 9110 §10.2.3); anything else, a past date or a negative number, asks for no
// wait of its own.
func TestRetryAfterReadsSecondsAndDatesAndNothingElse(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999999999999", 0},
		{"Tue, 08 Dec 2026 01:00:30 GMT", 30 * time.Second},
		{"Tue, 08 Dec 2026 00:59:00 GMT", 0},
	} {
		if got := retryAfter(tc.header, now); got != tc.want {
			t.Errorf("RetryAfter(%q) = %s, want %s", tc.header, got, tc.want)
		}
	}
}

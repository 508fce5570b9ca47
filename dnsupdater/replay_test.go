package dnsupdater

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// replays refuses a copy of a request until its time signed and fudge have passed, and, full,
// refuses new requests rather than forget one early, until the fudge of some has passed.
func TestReplaysRememberARequestUntilItsFudgePassesAndNeverForgetOneEarly(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	sig := func(mac string, signed time.Time) *dns.TSIG {
		return &dns.TSIG{Hdr: dns.RR_Header{Name: "Xfr-Key."}, MAC: mac, TimeSigned: uint64(signed.Unix()), Fudge: 300}
	}
	r := newReplays(2)
	for _, c := range []struct {
		name string
		sig  *dns.TSIG
		at   time.Duration
		want replayVerdict
	}{
		{"a request", sig("aa", t0), 0, replayFirst},
		{"its copy", sig("aa", t0), time.Second, replaySeen},
		{"its copy, the key's name in another case", &dns.TSIG{Hdr: dns.RR_Header{Name: "xfr-key."}, MAC: "AA", TimeSigned: uint64(t0.Unix()), Fudge: 300}, 2 * time.Second, replaySeen},
		{"another request, signed earlier", sig("bb", t0.Add(-10*time.Second)), 3 * time.Second, replayFirst},
		{"a third, with both remembered", sig("cc", t0), 4 * time.Second, replayFull},
		{"a third once the second's fudge has passed", sig("cc", t0), 291 * time.Second, replayFirst},
		{"the first's copy at the end of its fudge", sig("aa", t0), 300 * time.Second, replaySeen},
		{"the first's copy once its fudge has passed", sig("aa", t0), 301 * time.Second, replayFirst},
	} {
		if got := r.check(c.sig, t0.Add(c.at)); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

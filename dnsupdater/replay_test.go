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
		{"a third once the second's fudge has passed", sig("cc", t0), 292 * time.Second, replayFirst},
		{"the first's copy at the end of its fudge", sig("aa", t0), 300 * time.Second, replaySeen},
		{"the first's copy verified in the last instant of its fudge, checked a moment later", sig("aa", t0), 301*time.Second + time.Millisecond, replaySeen},
		{"the first's copy a second after its fudge has passed", sig("aa", t0), 302 * time.Second, replayFirst},
	} {
		if got := r.check(c.sig, t0.Add(c.at)); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// One key's requests fill only that key's share: a holder of one key, a secondary of one
// tenant, cannot make the transfers of another key SERVFAIL.
func TestReplaysGiveEachKeyItsOwnShare(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	sig := func(key, mac string) *dns.TSIG {
		return &dns.TSIG{Hdr: dns.RR_Header{Name: key}, MAC: mac, TimeSigned: uint64(t0.Unix()), Fudge: 300}
	}
	r := newReplays(2)
	for i, c := range []struct {
		sig  *dns.TSIG
		want replayVerdict
	}{
		{sig("tenant-a.", "a1"), replayFirst},
		{sig("tenant-a.", "a2"), replayFirst},
		{sig("tenant-a.", "a3"), replayFull},
		{sig("Tenant-B.", "b1"), replayFirst},
		{sig("tenant-b.", "b2"), replayFirst},
		{sig("tenant-b.", "b3"), replayFull},
		{sig("tenant-a.", "a1"), replaySeen},
	} {
		if got := r.check(c.sig, t0.Add(time.Duration(i)*time.Second)); got != c.want {
			t.Errorf("request %d (%s %s): %d, want %d", i+1, c.sig.Hdr.Name, c.sig.MAC, got, c.want)
		}
	}
}

// A request is remembered until maxFudge past its time signed at most, whatever fudge it asks
// for, since verify refuses it with BADTIME from then on: one signed 18 hours ahead with a fudge
// of 65,535 s no longer holds a slot for 36 hours.
func TestReplaysRememberARequestNoLongerThanTheFudgeDetourHonours(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	r := newReplays(1)
	sig := &dns.TSIG{Hdr: dns.RR_Header{Name: "xfr-key."}, MAC: "aa", TimeSigned: uint64(t0.Unix()), Fudge: 65535}
	if got := r.check(sig, t0); got != replayFirst {
		t.Fatalf("the request: %d, want %d", got, replayFirst)
	}
	if got := r.check(sig, t0.Add(maxFudge)); got != replaySeen {
		t.Errorf("its copy at maxFudge: %d, want %d", got, replaySeen)
	}
	other := &dns.TSIG{Hdr: dns.RR_Header{Name: "xfr-key."}, MAC: "bb", TimeSigned: uint64(t0.Add(maxFudge + 2*time.Second).Unix()), Fudge: 300}
	if got := r.check(other, t0.Add(maxFudge+2*time.Second)); got != replayFirst {
		t.Errorf("another request once maxFudge has passed: %d, want %d (the first still held its slot)", got, replayFirst)
	}
}

package prober

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

// leaseEvent is one thing p1's roster learns in playUneven: its own record sent or come back,
// or p2's record arriving.
type leaseEvent struct {
	at   time.Duration
	kind byte // 's' sent, 'e' echoed, '2' p2's record
}

// playUneven plays p1 heartbeating every hb into a store whose acknowledgements take a delay
// drawn from [0, maxDelay) each (a record owed while one is in flight is sent when it returns,
// as the heartbeat does), beside p2, which heartbeats every hb at its own phase, its records
// arriving after delays of the same range, and dies after its record sent at death. It returns
// when p2's last record arrived and the first instant, on a 10 ms grid, from which p1 no
// longer counts p2 live, and fails if p2 dropped out while it lived.
func playUneven(t *testing.T, rng *rand.Rand, hb, ttl, maxDelay, death time.Duration) (last, gone time.Duration) {
	t.Helper()
	delay := func() time.Duration { return time.Duration(rng.Int64N(int64(maxDelay))) }
	var evs []leaseEvent
	for at := time.Duration(0); at < death+4*ttl; {
		evs = append(evs, leaseEvent{at, 's'})
		acked := at + delay()
		evs = append(evs, leaseEvent{acked, 'e'})
		at = max(at+hb, acked)
	}
	phase := time.Duration(rng.Int64N(int64(hb)))
	for at := phase; at <= death; at += hb {
		arrived := at + delay()
		evs = append(evs, leaseEvent{arrived, '2'})
		last = max(last, arrived)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	self := Member{Region: "us-west", Name: "p1", ActiveFrom: t0, TTLMillis: ttl.Milliseconds(), Started: t0}
	p2 := self
	p2.Name = "p2"
	r := NewRoster(self, hb)
	r.Seen(self, t0.Add(time.Hour))
	next := 0
	gone = -1
	for now := time.Duration(0); now < death+4*ttl; now += 10 * time.Millisecond {
		for ; next < len(evs) && evs[next].at <= now; next++ {
			at := t0.Add(evs[next].at)
			switch evs[next].kind {
			case 's':
				r.Sent(at)
			case 'e':
				r.Echoed(at)
			case '2':
				r.Seen(p2, at)
			}
		}
		live := slices.Contains(r.Live(t0.Add(now)), "p2")
		switch {
		case live:
			gone = -1
		case now >= phase+maxDelay && now < last:
			t.Fatalf("p2, heartbeating every %s with delays under %s, counted gone at %s", hb, maxDelay, now)
		case gone < 0:
			gone = now
		}
	}
	return last, gone
}

// A store whose acknowledgements come back unevenly (now at once, now most of a heartbeat late)
// stores every record well within a lease: a member that died has its share taken over within
// its lease of its last record, plus at most the heartbeat the delay of the acknowledgement
// pending then may add. Each acknowledgement that came later than a heartbeat after the one
// before counted as blind time added to the others' leases, so that a dead member's lease grew
// with every late one: 3 s leases ran up to 4.8 s (1.8 s of its share unchecked beyond the lease)
// over 200 deaths with delays under 0.9 s at 1 s heartbeats.
func TestADeadMembersShareIsTakenOverWithinItsLeaseAndAHeartbeatUnderUnevenAckDelays(t *testing.T) {
	const hb, ttl = time.Second, 3 * time.Second // the defaults at checks of 3 s and more
	rng := rand.New(rand.NewPCG(1, 2))
	var worst time.Duration
	for range 200 {
		death := 10*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
		last, gone := playUneven(t, rng, hb, ttl, 9*hb/10, death)
		if gone < 0 {
			t.Fatalf("p2, dead after its record that arrived at %s, never dropped", last)
		}
		worst = max(worst, gone-last)
	}
	t.Logf("a dead member dropped at most %s after its last record arrived (lease %s)", worst, ttl)
	if limit := ttl + hb; worst > limit {
		t.Errorf("a dead member was counted live for %s after its last record arrived, want within its lease and a heartbeat (%s)", worst, limit)
	}
}

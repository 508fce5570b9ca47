package dnsupdater

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxReplays bounds the signed transfer requests remembered at once. Only a holder of a key can
// make a request that verifies, so the bound is sized for real traffic, not for a flood: 65,536
// transfers within one fudge (300 s from miekg/dns, Knot and BIND) is over 200 a second, and the
// whole costs about 15 MB at its fullest (SHA-512 MACs, kept as hex).
const maxReplays = 1 << 16

// replaySweep is how often the requests whose fudge has passed are dropped, at most, when there
// is still room: a sweep reads every one.
const replaySweep = time.Minute

// replayVerdict is what replays says of a signed request.
type replayVerdict int

const (
	// replayFirst is a request not seen before: it is served, and remembered.
	replayFirst replayVerdict = iota
	// replaySeen is a request seen before within its fudge: a replay.
	replaySeen
	// replayFull is a request not seen before that cannot be remembered: every one is until
	// the fudge of some has passed.
	replayFull
)

// replayKey is a verified request: the key's name, lower case, and its MAC, which no other
// request of the key has (the MAC covers the id, the question and the time signed).
type replayKey struct{ key, mac string }

// replays remembers the signed transfer requests served until their time signed and fudge have
// passed, after which the request would be BADTIME anyway (RFC 8945 §5.2.3), so that one
// captured and sent again within its fudge is refused (§10) rather than given the zone again.
// Only an exact copy is: RFC 8945's own check, a time signed earlier than the last seen for its
// key, would refuse one of two secondaries sharing a key with clocks a second apart. When
// maxReplays are remembered it refuses new requests, never forgets one early, until their
// fudge passes: forgetting would let a replay through.
type replays struct {
	mu        sync.Mutex
	until     map[replayKey]time.Time
	max       int
	lastSweep time.Time
}

func newReplays(max int) *replays {
	return &replays{until: map[replayKey]time.Time{}, max: max}
}

// keyOf is the request signed with sig as replays remembers it.
func keyOf(sig *dns.TSIG) replayKey {
	return replayKey{key: strings.ToLower(sig.Hdr.Name), mac: strings.ToLower(sig.MAC)}
}

// seen says whether the request signed with sig, verified at now, was seen before, as check
// does, remembering nothing: a copy is refused before its zone's transfer is built.
func (r *replays) seen(sig *dns.TSIG, now time.Time) bool {
	k := keyOf(sig)
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.until[k]
	return ok && now.Before(t)
}

// check says whether the request signed with sig, verified at now, was seen before, and
// remembers it when it was not.
func (r *replays) check(sig *dns.TSIG, now time.Time) replayVerdict {
	k := keyOf(sig)
	// Verified up to Time Signed + fudge inclusive, in whole seconds.
	until := time.Unix(int64(sig.TimeSigned)+int64(sig.Fudge)+1, 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.until[k]; ok && now.Before(t) {
		return replaySeen
	}
	// Full, it sweeps at most once a second, so that a burst of requests does not read every
	// one each.
	if since := now.Sub(r.lastSweep); since >= replaySweep || len(r.until) >= r.max && since >= time.Second {
		r.lastSweep = now
		for k, t := range r.until {
			if !now.Before(t) {
				delete(r.until, k)
			}
		}
	}
	if len(r.until) >= r.max {
		return replayFull
	}
	r.until[k] = until
	return replayFirst
}

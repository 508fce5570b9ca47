package dnsupdater

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxReplaysPerKey bounds the signed transfer requests of one key remembered at once. Each key
// has its own share, as each secondary, perhaps a tenant's, has its own key: a key's holder can
// fill only its own, after which only its key's new requests get SERVFAIL. Only a holder of a
// key can make a request that verifies, so the share is sized for real traffic, not for a
// flood: a secondary of 10,000 zones transferring each within a few minutes of starting holds
// 10,000 (five sharing its key, 50,000), and 65,536 within the 600 s a request is remembered at
// most (see maxFudge) is over 100 transfers a second. A share at its fullest costs about 15 MB
// (SHA-512 MACs, kept as hex); the keys are the configuration's.
const maxReplaysPerKey = 1 << 16

// maxFudge is the most fudge Detour honours: a request signed further than that from its clock
// is BADTIME (see keyring.verify), whatever fudge it asks for, as Hickory DNS's configured
// fudge decides. 300 s is the fudge miekg/dns, Knot and BIND sign with and RFC 8945 recommends,
// so their secondaries are served as before; RFC 8945 §5.2.3 requires BADTIME outside the
// request's own window, not that every request inside it be served. Without the bound, a
// request signed 18 hours ahead with a fudge of 65,535 s verified (as BIND and Knot, which
// honour the request's fudge, verify it) and was remembered for 36 hours.
const maxFudge = 300 * time.Second

// replaySweep is how often the requests whose fudge has passed are dropped, at most, when no
// key's share is full: a sweep reads every one.
const replaySweep = time.Minute

// replayVerdict is what replays says of a signed request.
type replayVerdict int

const (
	// replayFirst is a request not seen before: it is served, and remembered.
	replayFirst replayVerdict = iota
	// replaySeen is a request seen before within its fudge: a replay.
	replaySeen
	// replayFull is a request not seen before that cannot be remembered: its key's share is,
	// until the fudge of some of them has passed.
	replayFull
)

// replayKey is a verified request: the key's name, lower case, and its MAC, which no other
// request of the key has (the MAC covers the id, the question and the time signed).
type replayKey struct{ key, mac string }

// replays remembers the signed transfer requests served until their time signed and fudge
// (maxFudge at most) have passed, after which the request would be BADTIME anyway (RFC 8945
// §5.2.3), so that one captured and sent again within its fudge is refused (§10) rather than
// given the zone again. Only an exact copy is: RFC 8945's own check, a time signed earlier than
// the last seen for its key, would refuse one of two secondaries sharing a key with clocks a
// second apart. When a key has max requests remembered it refuses that key's new requests,
// never forgets one early, until their fudge passes: forgetting would let a replay through.
type replays struct {
	mu    sync.Mutex
	until map[replayKey]time.Time
	// perKey counts the requests of each key in until; a key with none has no entry.
	perKey    map[string]int
	max       int
	lastSweep time.Time
}

func newReplays(max int) *replays {
	return &replays{until: map[replayKey]time.Time{}, perKey: map[string]int{}, max: max}
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
// remembers it when it was not and its key's share has room.
func (r *replays) check(sig *dns.TSIG, now time.Time) replayVerdict {
	k := keyOf(sig)
	// Verified up to Time Signed + fudge inclusive, in whole seconds, the fudge maxFudge at most;
	// kept a second more, so that a copy verified in the last instant of its fudge and checked
	// here a moment later, in the next second, is still found.
	fudge := min(int64(sig.Fudge), int64(maxFudge/time.Second))
	until := time.Unix(int64(sig.TimeSigned)+fudge+2, 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.until[k]; ok && now.Before(t) {
		return replaySeen
	}
	// With a key's share full, it sweeps at most once a second, so that a burst of requests
	// does not read every one each.
	if since := now.Sub(r.lastSweep); since >= replaySweep || r.perKey[k.key] >= r.max && since >= time.Second {
		r.lastSweep = now
		for k, t := range r.until {
			if !now.Before(t) {
				r.forget(k)
			}
		}
	}
	if _, ok := r.until[k]; ok {
		// A copy whose fudge has passed, not swept yet: it takes the place it held.
		r.forget(k)
	}
	if r.perKey[k.key] >= r.max {
		return replayFull
	}
	r.until[k] = until
	r.perKey[k.key]++
	return replayFirst
}

// forget drops the request k, whose fudge has passed. The caller holds r.mu.
func (r *replays) forget(k replayKey) {
	delete(r.until, k)
	if r.perKey[k.key]--; r.perKey[k.key] == 0 {
		delete(r.perKey, k.key)
	}
}

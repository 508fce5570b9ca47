package dnsupdater

import (
	"net/netip"
	"sync"
	"time"

	"github.com/detourdev/detour/events/config"
)

// verdict is what response rate limiting does with one response.
type verdict uint8

const (
	verdictSend verdict = iota
	verdictDrop
	// verdictSlip sends the response truncated, so a real client retries over TCP while a
	// spoofed victim receives nothing larger than the query.
	verdictSlip
)

// limiter is response rate limiting (RRL) per client prefix: a token bucket of
// responses_per_second per /ipv4_prefix or /ipv6_prefix, with every slip-th limited response
// sent truncated instead of dropped. TCP is never limited: its clients cannot be spoofed.
type limiter struct {
	rate, burst    float64
	slip           int
	v4bits, v6bits int
	exempt         []netip.Prefix
	shards         [64]rrlShard
}

type rrlShard struct {
	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	limited int
}

// maxBuckets bounds the prefixes one shard tracks; full shards forget their idle prefixes.
const maxBuckets = 4096

// newLimiter returns the limiter of rl, or nil when rate limiting is off.
func newLimiter(rl config.RateLimit) *limiter {
	if rl.ResponsesPerSecond == nil || *rl.ResponsesPerSecond <= 0 {
		return nil
	}
	l := &limiter{
		rate: float64(*rl.ResponsesPerSecond), burst: float64(*rl.ResponsesPerSecond),
		v4bits: rl.IPv4Prefix, v6bits: rl.IPv6Prefix,
	}
	if rl.Slip != nil {
		l.slip = *rl.Slip
	}
	l.exempt = rl.ExemptPrefixes()
	for i := range l.shards {
		l.shards[i].buckets = map[netip.Prefix]*bucket{}
	}
	return l
}

// check decides the fate of one UDP response to client at the time now returns.
func (l *limiter) check(client netip.Addr, now func() time.Time) verdict {
	if l == nil {
		return verdictSend
	}
	return l.decide(client, now())
}

// decide is check at a given time.
func (l *limiter) decide(client netip.Addr, at time.Time) verdict {
	client = client.Unmap()
	for _, p := range l.exempt {
		if p.Contains(client) {
			return verdictSend
		}
	}
	bits := l.v6bits
	if client.Is4() {
		bits = l.v4bits
	}
	key, _ := client.Prefix(bits)
	sh := &l.shards[shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= maxBuckets {
			sh.forgetIdle(at, l.burst/l.rate)
		}
		b = &bucket{tokens: l.burst, last: at}
		sh.buckets[key] = b
	}
	if el := at.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = at
	}
	if b.tokens >= 1 {
		b.tokens--
		return verdictSend
	}
	b.limited++
	if l.slip > 0 && b.limited%l.slip == 0 {
		return verdictSlip
	}
	return verdictDrop
}

// forgetIdle drops the buckets that have refilled completely; past the bound, everything.
func (sh *rrlShard) forgetIdle(at time.Time, refill float64) {
	for k, b := range sh.buckets {
		if at.Sub(b.last).Seconds() >= refill {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) >= maxBuckets {
		clear(sh.buckets)
	}
}

func shardOf(p netip.Prefix) int {
	b := p.Addr().As16()
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % 64)
}

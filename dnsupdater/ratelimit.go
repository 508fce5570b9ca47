package dnsupdater

import (
	"container/list"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
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

// limiter is response rate limiting (RRL) keyed as BIND's is: a token bucket of
// responses_per_second per client prefix (/ipv4_prefix or /ipv6_prefix) and kind of response:
// answers per query name and type, NODATA per query name (per wildcard for those a wildcard
// synthesizes), referrals per delegation, NXDOMAIN per zone and errors per prefix. Every
// slip-th limited response is sent truncated instead of dropped. TCP is never limited: its
// clients cannot be spoofed.
type limiter struct {
	rate, burst    float64
	slip           int
	v4bits, v6bits int
	exempt         []netip.Prefix
	// seed keys the bucket hash, drawn per limiter so that no one outside the process can
	// choose names that land on one shard and push a client's bucket out of it.
	seed   maphash.Seed
	shards [64]rrlShard
}

// rrlShard holds some of the buckets, the least recently used last: a full shard forgets that
// one, so a flood of spoofed prefixes cannot reset the buckets of the clients being limited.
type rrlShard struct {
	mu      sync.Mutex
	buckets map[uint64]*list.Element
	lru     list.List
}

type bucket struct {
	key     uint64
	tokens  float64
	last    time.Time
	limited int
}

// maxBuckets bounds the buckets one shard tracks.
const maxBuckets = 4096

// newLimiter returns the limiter of rl, or nil when rate limiting is off.
func newLimiter(rl config.RateLimit) *limiter {
	if rl.ResponsesPerSecond == nil || *rl.ResponsesPerSecond <= 0 {
		return nil
	}
	l := &limiter{
		rate: float64(*rl.ResponsesPerSecond), burst: float64(*rl.ResponsesPerSecond),
		v4bits: rl.IPv4Prefix, v6bits: rl.IPv6Prefix, seed: maphash.MakeSeed(),
	}
	if rl.Slip != nil {
		l.slip = *rl.Slip
	}
	l.exempt = rl.ExemptPrefixes()
	for i := range l.shards {
		l.shards[i].buckets = map[uint64]*list.Element{}
	}
	return l
}

// check decides the fate of the UDP response resp to client at the time now returns. wildcard
// is the owner name of the wildcard that synthesized resp's answer or NODATA, or "".
func (l *limiter) check(client netip.Addr, resp []byte, wildcard string, now func() time.Time) verdict {
	if l == nil {
		return verdictSend
	}
	return l.decide(client, resp, wildcard, now())
}

// decide is check at a given time.
func (l *limiter) decide(client netip.Addr, resp []byte, wildcard string, at time.Time) verdict {
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
	prefix, _ := client.Prefix(bits)
	var buf [256]byte
	var wild []byte
	if wildcard != "" {
		if n, err := dns.PackDomainName(wildcard, buf[:], 0, nil, false); err == nil {
			wild = buf[:n]
		}
	}
	key := rrlKey(l.seed, prefix, resp, wild)
	sh := &l.shards[key%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var b *bucket
	if el := sh.buckets[key]; el != nil {
		sh.lru.MoveToFront(el)
		b = el.Value.(*bucket)
	} else {
		if sh.lru.Len() >= maxBuckets {
			oldest := sh.lru.Back()
			sh.lru.Remove(oldest)
			delete(sh.buckets, oldest.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: l.burst, last: at}
		sh.buckets[key] = sh.lru.PushFront(b)
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

// The kinds of response RRL tells apart.
const (
	rrlAnswer byte = iota + 1
	rrlNoData
	rrlReferral
	rrlNXDomain
	rrlError
)

// rrlKey hashes, with seed, the bucket of resp sent to prefix, as BIND's RRL names its buckets: the prefix,
// the kind of response and a domain name — the query name and type for answers, the query name
// for NODATA, the delegation (the authority's NS owner) for referrals and the zone (the
// authority's SOA owner) for NXDOMAIN, so that random names under one zone or one delegation
// share a bucket and two zones do not. Errors have no name. An answer or NODATA that a
// wildcard synthesized (its CNAME chain's included) is keyed by the wildcard's owner name,
// wild in wire form, instead of the query name, so that random names under one wildcard share
// the bucket of the wildcard asked for literally; wild is nil for any other reply.
func rrlKey(seed maphash.Seed, prefix netip.Prefix, resp, wild []byte) uint64 {
	kind := rrlError
	var qname, qtype []byte
	if len(resp) >= headerLen && binary.BigEndian.Uint16(resp[4:]) == 1 {
		qname = responseQuestion(resp)
	}
	var name int // the offset of the name the bucket is keyed by; 0 for none
	if qname != nil {
		qtype = resp[headerLen+len(qname) : headerLen+len(qname)+2]
		ancount := int(binary.BigEndian.Uint16(resp[6:]))
		switch rcode := resp[3] & 0x0F; {
		case rcode == 0 && ancount > 0:
			kind, name = rrlAnswer, headerLen
		case rcode == 0:
			kind, name = rrlNoData, headerLen
			if owner, typ, ok := firstAuthority(resp, len(qname), ancount); ok && typ == dns.TypeNS && resp[2]&0x04 == 0 {
				kind, name = rrlReferral, owner
			}
		case rcode == 3:
			kind = rrlNXDomain
			if owner, typ, ok := firstAuthority(resp, len(qname), ancount); ok && typ == dns.TypeSOA {
				name = owner
			}
		}
	}
	// The prefix (16 bytes and a length), the kind (its top bit set for IPv4), a name of at
	// most 255 bytes and a type.
	var buf [16 + 2 + 255 + 2]byte
	a, family := prefix.Addr().As16(), byte(0)
	if prefix.Addr().Is4() {
		family = 0x80
	}
	copy(buf[:], a[:])
	buf[16], buf[17] = byte(prefix.Bits()), kind|family
	// The name: the wildcard's and the question's are uncompressed and copied lower-cased in
	// one pass (their length bytes, at most 63, are below 'A'); one in a later section may
	// be compressed.
	var n []byte
	switch {
	case wild != nil && (kind == rrlAnswer || kind == rrlNoData):
		n = lowerInto(buf[18:], wild)
	case name == headerLen:
		n = lowerInto(buf[18:], qname)
	case name > 0:
		n, _ = appendName(buf[18:18], resp, name)
	}
	b := buf[:18+len(n)]
	if kind == rrlAnswer {
		b = append(b, qtype...)
	}
	return maphash.Bytes(seed, b)
}

// firstAuthority returns the offset of the owner name and the type of the first authority
// record of resp, whose question name is qlen bytes long and which has ancount answers.
func firstAuthority(resp []byte, qlen, ancount int) (owner int, typ uint16, ok bool) {
	if binary.BigEndian.Uint16(resp[8:]) == 0 {
		return 0, 0, false
	}
	off := headerLen + qlen + 4
	for range ancount {
		if off = skipName(resp, off); off < 0 || off+10 > len(resp) {
			return 0, 0, false
		}
		off += 10 + int(binary.BigEndian.Uint16(resp[off+8:]))
	}
	end := skipName(resp, off)
	if end < 0 || end+2 > len(resp) {
		return 0, 0, false
	}
	return off, binary.BigEndian.Uint16(resp[end:]), true
}

// skipName returns the offset just past the (possibly compressed) name at off, or -1.
func skipName(msg []byte, off int) int {
	for off < len(msg) {
		switch l := int(msg[off]); {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case l&0xC0 != 0:
			return -1
		default:
			off += l + 1
		}
	}
	return -1
}

// lowerInto copies the uncompressed name to the start of dst, of 255 bytes or more, with ASCII
// letters in lower case, and returns the copy; a name longer than 255 bytes is cut there.
func lowerInto(dst, name []byte) []byte {
	dst = dst[:min(len(name), 255)]
	for i := range dst {
		dst[i] = lower(name[i])
	}
	return dst
}

// responseQuestion returns the question name of resp in wire form, or nil when the question
// is cut short.
func responseQuestion(resp []byte) []byte {
	off := headerLen
	for off < len(resp) && resp[off] != 0 {
		if resp[off]&0xC0 != 0 {
			return nil
		}
		off += int(resp[off]) + 1
	}
	if off+5 > len(resp) {
		return nil
	}
	return resp[headerLen : off+1]
}

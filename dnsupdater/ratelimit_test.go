package dnsupdater

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

func rateLimit(rps, slip int, exempt ...string) config.RateLimit {
	return config.RateLimit{ResponsesPerSecond: &rps, Slip: &slip, IPv4Prefix: 24, IPv6Prefix: 56, Exempt: exempt}
}

// verdicts renders the limiter's decisions for a sequence of responses: S sent, D dropped,
// T sent truncated.
func verdicts(l *limiter, client string, at []time.Duration) string {
	var b strings.Builder
	base := time.Unix(1000, 0)
	resp := response(dns.RcodeSuccess, "shop.demo.test.", dns.TypeA, true)
	for _, d := range at {
		b.WriteByte("SDT"[l.decide(netip.MustParseAddr(client), resp, "", base.Add(d))])
	}
	return b.String()
}

// response packs a reply to name and qtype with rcode, with an answer record or none, and an
// OPT record.
func response(rcode int, name string, qtype uint16, answer bool) []byte {
	m := withEDNS(newQuery(name, qtype), 1232)
	m.Response, m.Rcode = true, rcode
	if answer {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(192, 0, 2, 1)}}
	}
	p, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return p
}

func times(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * step
	}
	return out
}

func TestResponseRateLimitingPerClientPrefix(t *testing.T) {
	tests := []struct {
		name   string
		rl     config.RateLimit
		client string
		at     []time.Duration
		want   string
	}{
		{name: "a burst beyond the rate is dropped, every second one slips out truncated", rl: rateLimit(3, 2), client: "192.0.2.1", at: times(9, 0), want: "SSSDTDTDT"},
		{name: "slip 0 drops every limited response", rl: rateLimit(3, 0), client: "192.0.2.1", at: times(6, 0), want: "SSSDDD"},
		{name: "tokens come back at the configured rate", rl: rateLimit(2, 0), client: "192.0.2.1", at: []time.Duration{0, 0, 0, 500 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond}, want: "SSDSDS"},
		{name: "a client within its rate is never limited", rl: rateLimit(10, 2), client: "192.0.2.1", at: times(50, 100*time.Millisecond), want: strings.Repeat("S", 50)},
		{name: "exempt clients are never limited", rl: rateLimit(1, 2, "192.0.2.0/24"), client: "192.0.2.1", at: times(5, 0), want: "SSSSS"},
		{name: "an IPv4-mapped exempt prefix exempts the IPv4 clients it maps", rl: rateLimit(1, 2, "::ffff:192.0.2.0/120"), client: "192.0.2.1", at: times(5, 0), want: "SSSSS"},
		{name: "IPv6 clients are limited per /56", rl: rateLimit(1, 0), client: "2001:db8:0:ff::1", at: times(3, 0), want: "SDD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdicts(newLimiter(tt.rl), tt.client, tt.at); got != tt.want {
				t.Errorf("want %s, got %s", tt.want, got)
			}
		})
	}
}

func TestClientsOfOnePrefixShareABucketAndOthersDoNot(t *testing.T) {
	l := newLimiter(rateLimit(1, 0))
	at := time.Unix(1000, 0)
	resp := response(dns.RcodeSuccess, "shop.demo.test.", dns.TypeA, true)
	first := l.decide(netip.MustParseAddr("198.51.100.1"), resp, "", at)
	sameNet := l.decide(netip.MustParseAddr("198.51.100.200"), resp, "", at)
	otherNet := l.decide(netip.MustParseAddr("198.51.101.1"), resp, "", at)
	if first != verdictSend || sameNet != verdictDrop || otherNet != verdictSend {
		t.Errorf("want send, drop (same /24), send (other /24); got %d %d %d", first, sameNet, otherNet)
	}
}

func TestRateLimitingIsOffAtZeroAndByDefault(t *testing.T) {
	if l := newLimiter(rateLimit(0, 2)); l != nil {
		t.Errorf("responses_per_second 0: want no limiter")
	}
	if l := newLimiter(eventstest.Config(t, demoConfig).DNS.RateLimit); l != nil {
		t.Errorf("no rate_limit configured: want no limiter (as BIND)")
	}
}

func TestRateLimitBucketsAreKeyedByNameTypeAndKindAsBINDs(t *testing.T) {
	client := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name      string
		first     []byte
		second    []byte
		wantShare bool
	}{
		{name: "answers for two names are limited apart", first: response(0, "a.demo.test.", dns.TypeA, true), second: response(0, "b.demo.test.", dns.TypeA, true), wantShare: false},
		{name: "answers for two types of one name are limited apart", first: response(0, "a.demo.test.", dns.TypeA, true), second: response(0, "a.demo.test.", dns.TypeAAAA, true), wantShare: false},
		{name: "answers for one name in two cases share a bucket", first: response(0, "a.demo.test.", dns.TypeA, true), second: response(0, "A.Demo.test.", dns.TypeA, true), wantShare: true},
		{name: "NODATA for two types of one name shares a bucket", first: response(0, "a.demo.test.", dns.TypeMX, false), second: response(0, "a.demo.test.", dns.TypeTXT, false), wantShare: true},
		{name: "an answer and a NODATA of one name are limited apart", first: response(0, "a.demo.test.", dns.TypeA, true), second: response(0, "a.demo.test.", dns.TypeMX, false), wantShare: false},
		{name: "errors share one bucket", first: response(dns.RcodeRefused, "example.com.", dns.TypeA, false), second: response(dns.RcodeRefused, "example.net.", dns.TypeA, false), wantShare: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(rateLimit(1, 0))
			at := time.Unix(1000, 0)
			l.decide(client, tt.first, "", at)
			shared := l.decide(client, tt.second, "", at) == verdictDrop
			if shared != tt.wantShare {
				t.Errorf("want shared bucket %v, got %v", tt.wantShare, shared)
			}
		})
	}
}

// TestServedRepliesAreLimitedPerZoneDelegationAndWildcardAsBINDs builds real replies and checks
// which share a bucket: NXDOMAIN per zone, referrals per delegation, and answers and NODATA a
// wildcard synthesizes per wildcard, as BIND's RRL keys them.
func TestServedRepliesAreLimitedPerZoneDelegationAndWildcardAsBINDs(t *testing.T) {
	tab := testTable(t)
	w := newWorker(1)
	client := netip.MustParseAddr("198.51.100.1")
	// reply is a reply and the wildcard it was synthesized from, as answerUDP hands them over.
	type reply struct {
		resp     []byte
		wildcard string
	}
	ask := func(name string, qtype uint16) reply {
		p, err := withEDNS(newQuery(name, qtype), 1232).Pack()
		if err != nil {
			t.Fatal(err)
		}
		return reply{slices.Clone(w.respond(tab, p, client, false)), w.wildcard}
	}
	tests := []struct {
		name          string
		first, second reply
		wantShare     bool
	}{
		{name: "NXDOMAIN for random names of one zone shares a bucket", first: ask("x1.demo.test.", dns.TypeA), second: ask("x2.deep.demo.test.", dns.TypeAAAA), wantShare: true},
		{name: "NXDOMAIN of two zones is limited apart", first: ask("x1.demo.test.", dns.TypeA), second: ask("x1.other.test.", dns.TypeA), wantShare: false},
		{name: "referrals for random names under one delegation share a bucket", first: ask("a.sub.demo.test.", dns.TypeA), second: ask("b.c.sub.demo.test.", dns.TypeMX), wantShare: true},
		{name: "a referral and a NODATA are limited apart", first: ask("a.sub.demo.test.", dns.TypeA), second: ask("demo.test.", dns.TypeA), wantShare: false},
		{name: "NODATA of two names is limited apart", first: ask("mail.demo.test.", dns.TypeA), second: ask("mx.demo.test.", dns.TypeMX), wantShare: false},
		{name: "answers for random names under one wildcard share a bucket", first: ask("r1.wild.demo.test.", dns.TypeA), second: ask("r2.x.wild.demo.test.", dns.TypeA), wantShare: true},
		{name: "an answer under a wildcard shares the bucket of the wildcard asked literally", first: ask("*.wild.demo.test.", dns.TypeA), second: ask("r1.wild.demo.test.", dns.TypeA), wantShare: true},
		{name: "NODATA for random names under one wildcard shares a bucket", first: ask("r1.wild.demo.test.", dns.TypeMX), second: ask("r2.wild.demo.test.", dns.TypeTXT), wantShare: true},
		{name: "CNAMEs a wildcard synthesizes for random names share a bucket", first: ask("r1.walias.demo.test.", dns.TypeA), second: ask("r2.walias.demo.test.", dns.TypeA), wantShare: true},
		{name: "answers of two wildcards are limited apart", first: ask("r1.wild.demo.test.", dns.TypeA), second: ask("r1.walias.demo.test.", dns.TypeA), wantShare: false},
		{name: "a wildcard's answer and an ordinary name's are limited apart", first: ask("r1.walias.demo.test.", dns.TypeA), second: ask("shop.demo.test.", dns.TypeA), wantShare: false},
		{name: "answers of two types under one wildcard are limited apart", first: ask("r1.walias.demo.test.", dns.TypeA), second: ask("r2.walias.demo.test.", dns.TypeCNAME), wantShare: false},
		{name: "a wildcard's answer and its NODATA are limited apart", first: ask("r1.wild.demo.test.", dns.TypeA), second: ask("r2.wild.demo.test.", dns.TypeMX), wantShare: false},
		{name: "NXDOMAIN below a name beside a wildcard stays per zone", first: ask("x.a\\.b.wild.demo.test.", dns.TypeA), second: ask("nope.demo.test.", dns.TypeA), wantShare: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(rateLimit(1, 0))
			at := time.Unix(1000, 0)
			if l.decide(client, tt.first.resp, tt.first.wildcard, at) != verdictSend {
				t.Fatal("the first reply was limited")
			}
			shared := l.decide(client, tt.second.resp, tt.second.wildcard, at) == verdictDrop
			if shared != tt.wantShare {
				t.Errorf("want shared bucket %v, got %v", tt.wantShare, shared)
			}
		})
	}
}

func TestServerLimitsRandomNamesUnderAWildcardAsOneName(t *testing.T) {
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, `
zones:
  - name: demo.test
    records: ["*.wild IN A 192.0.2.80", "*.wild2 IN A 192.0.2.81", "plain IN A 192.0.2.82"]
dns:
  rate_limit: {responses_per_second: 5, slip: 2, exempt: []}
`)
	h := startServer(t, js, cfg, "")
	c, err := net.Dial("udp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("r%d.wild.demo.test.", i))
	}
	if full, truncated := sendAndCount(t, c, names...); full < 5 || full > 6 || truncated < 15 {
		t.Errorf("40 random names under one wildcard at once, 5 a second, slip 2: want 5 (or 6) full answers and the rest half truncated, as for one name; got %d full and %d truncated", full, truncated)
	}
	// Another wildcard's and an ordinary name's buckets are their own: full, the first five.
	if full, truncated := sendAndCount(t, c, "r1.wild2.demo.test.", "r2.wild2.demo.test.", "plain.demo.test."); full != 3 || truncated != 0 {
		t.Errorf("another wildcard and an ordinary name after the flood: want 3 full answers, got %d full and %d truncated", full, truncated)
	}
}

func TestASpoofedFloodDoesNotResetTheLimitOfAnActiveClient(t *testing.T) {
	l := newLimiter(rateLimit(1, 0))
	at := time.Unix(1000, 0)
	victim := netip.MustParseAddr("203.0.113.7")
	resp := response(0, "shop.demo.test.", dns.TypeA, true)
	l.decide(victim, resp, "", at)
	// Twice as many spoofed prefixes as the limiter holds, the victim asking all along.
	for i := range 2 * len(l.shards) * maxBuckets {
		spoofed := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.decide(spoofed, resp, "", at)
		if i%256 == 0 {
			if v := l.decide(victim, resp, "", at); v != verdictDrop {
				t.Fatalf("after %d spoofed prefixes the victim's bucket was forgotten (verdict %d)", i, v)
			}
		}
	}
	if n := l.shards[0].lru.Len(); n > maxBuckets {
		t.Errorf("a shard holds %d buckets, bound %d", n, maxBuckets)
	}
}

func TestASlippedReplyKeepsItsOPTRecord(t *testing.T) {
	resp := truncated(response(0, "shop.demo.test.", dns.TypeA, true))
	r := new(dns.Msg)
	if err := r.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) != 0 || r.IsEdns0() == nil || r.Question[0].Name != "shop.demo.test." {
		t.Errorf("want TC, no answer, the question and the OPT record; got %v", r)
	}
}

func TestServerRateLimitsUDPButNotTCP(t *testing.T) {
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig+"dns:\n  rate_limit: {responses_per_second: 5, slip: 2, exempt: []}\n")
	h := startServer(t, js, cfg, "")
	c, err := net.Dial("udp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := make([]string, 20)
	for i := range names {
		names[i] = "shop.demo.test."
	}
	full, truncated := sendAndCount(t, c, names...)
	if full < 5 || full > 6 || truncated < 6 {
		t.Errorf("20 queries at once, 5 a second, slip 2: want 5 (or 6) full answers and the rest half truncated, got %d full and %d truncated", full, truncated)
	}
	for range 10 {
		if got := addrs(ask(t, h.srv.Addr(), "tcp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.11"}) {
			t.Fatalf("TCP must not be limited, got %v", got)
		}
	}
}

// sendAndCount sends c a query of type A for each of names, with ids from 0, and counts the
// full and the truncated replies that come until none has for 300 ms.
func sendAndCount(t *testing.T, c net.Conn, names ...string) (full, truncated int) {
	t.Helper()
	for i, name := range names {
		m := newQuery(name, dns.TypeA)
		m.Id = uint16(i)
		p, _ := m.Pack()
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return full, truncated
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if r.Truncated {
			truncated++
		} else {
			full++
		}
	}
}

// FuzzRRLKey feeds arbitrary replies to the bucket key, which reads names through compression
// pointers: it must not panic, and a reply's key must not depend on anything but the reply.
func FuzzRRLKey(f *testing.F) {
	tab := testTable(f)
	w := newWorker(1)
	for _, m := range seedQueries() {
		if p, err := m.Pack(); err == nil {
			if r := w.respond(tab, p, netip.MustParseAddr("192.0.2.1"), false); r != nil {
				f.Add(slices.Clone(r))
			}
		}
	}
	prefix, seed := netip.MustParsePrefix("198.51.100.0/24"), maphash.MakeSeed()
	wild, _ := wireName("*.wild.demo.test.")
	f.Fuzz(func(t *testing.T, resp []byte) {
		if rrlKey(seed, prefix, resp, nil) != rrlKey(seed, prefix, slices.Clone(resp), nil) {
			t.Fatal("two keys for one reply")
		}
		if rrlKey(seed, prefix, resp, []byte(wild)) != rrlKey(seed, prefix, slices.Clone(resp), []byte(wild)) {
			t.Fatal("two keys for one reply synthesized from a wildcard")
		}
	})
}

// BenchmarkRateLimit times one verdict: a client within its rate, its bucket found; a flood of
// spoofed prefixes, each verdict making a bucket and forgetting the oldest; and an answer a
// wildcard synthesized, keyed by the wildcard's name.
func BenchmarkRateLimit(b *testing.B) {
	resp := response(dns.RcodeSuccess, "shop.demo.test.", dns.TypeA, true)
	at := time.Unix(1000, 0)
	b.Run("one client", func(b *testing.B) {
		l := newLimiter(rateLimit(1<<30, 2))
		client := netip.MustParseAddr("198.51.100.1")
		for b.Loop() {
			l.decide(client, resp, "", at)
		}
	})
	b.Run("spoofed prefixes", func(b *testing.B) {
		l := newLimiter(rateLimit(5, 2))
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			i := r.Uint32()
			l.decide(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}), resp, "", at)
		}
	})
	b.Run("wildcard", func(b *testing.B) {
		l := newLimiter(rateLimit(1<<30, 2))
		client := netip.MustParseAddr("198.51.100.1")
		wresp := response(dns.RcodeSuccess, "x7f3a.wild.demo.test.", dns.TypeA, true)
		for b.Loop() {
			l.decide(client, wresp, "*.wild.demo.test.", at)
		}
	})
}

// fixedKey is the bucket key of an answer to client as Detour computed it before the hash was
// seeded, FNV-1a over the client's prefix, the kind of response, the lower-case query name and
// the query type: what an attacker computes to aim names at one shard.
func fixedKey(client netip.Prefix, resp []byte) uint64 {
	h := fnv.New64a()
	h.Write(client.Addr().AsSlice())
	h.Write([]byte{byte(client.Bits()), rrlAnswer})
	q := responseQuestion(resp)
	h.Write(bytes.ToLower(q))
	h.Write(resp[headerLen+len(q) : headerLen+len(q)+2])
	return h.Sum64()
}

func TestNamesAimedAtAVictimsShardDoNotEvictItsBucket(t *testing.T) {
	// A victim being limited, then a flood of answers for names chosen so that the fixed hash
	// put each on the victim's shard: the 4,096th forgot the victim's bucket, and the victim's
	// next response went out with a full one. Seeded, the names spread over every shard.
	l := newLimiter(rateLimit(1, 0))
	at := time.Unix(1000, 0)
	victim := netip.MustParseAddr("192.0.2.1")
	resp := response(dns.RcodeSuccess, "shop.demo.test.", dns.TypeA, true)
	if got := verdicts(l, victim.String(), times(3, 0)); got != "SDD" {
		t.Fatalf("the victim, before the flood: want SDD, got %s", got)
	}
	attacker := netip.MustParsePrefix("198.51.100.0/24")
	target := fixedKey(netip.MustParsePrefix("192.0.2.0/24"), resp) % uint64(len(l.shards))
	tmpl := response(dns.RcodeSuccess, "n0000000.demo.test.", dns.TypeA, true)
	aimed := 0
	for i := 0; aimed < maxBuckets; i++ {
		r := slices.Clone(tmpl)
		copy(r[headerLen+2:], fmt.Sprintf("%07d", i))
		if fixedKey(attacker, r)%uint64(len(l.shards)) == target {
			l.decide(attacker.Addr(), r, "", at)
			aimed++
		}
	}
	if got := l.decide(victim, resp, "", at); got != verdictDrop {
		t.Errorf("after %d answers aimed at its shard the victim's response was %s, want dropped: its bucket was forgotten", aimed, "SDT"[got:got+1])
	}
}

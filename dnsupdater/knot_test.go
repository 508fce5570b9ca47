package dnsupdater

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// differentialConfig is the zone the differential test loads into Detour and, through an AXFR
// from Detour, into Knot: every kind of name a query can meet, names in record data spelt in
// upper case or with escapes, and labels holding a dot among them; NS, MX and SRV targets of
// every kind: glue below a delegation, names a wildcard answers; and a delegation whose name
// servers lie at every kind of place (below its cut, in the zone, below another delegation, at a
// wildcard, at a CNAME, outside the zone). Detour reports the identity Knot does (knottest.NSID).
const differentialConfig = `
dns: {identity: %[2]s}
zones:
  - name: conf.test
    nameservers: [{name: ns1.conf.test, address: 127.0.0.53}, {name: ns2.conf.test, address: "::53"}]
    transfer_to: ["127.0.0.1"]
    records:
      - "@ IN MX 10 mx"
      - "@ IN TXT \"apex\""
      - "mx IN A 192.0.2.25"
      - "mx IN AAAA 2001:db8::25"
      - "www IN CNAME shop"
      - "alias IN CNAME mx"
      - "chain IN CNAME alias"
      - "dangling IN CNAME nothere"
      - "outside IN CNAME www.example.com."
      - "deleg IN CNAME host.sub"
      - "txt IN TXT \"hello\" \"world\""
      - "x.deep IN A 192.0.2.9"
      - "sub IN NS ns.sub"
      - "sub IN NS ns.other.example."
      - "ns.sub IN A 192.0.2.7"
      - "sub2 IN NS ns.other.example."
      - "*.wild IN A 192.0.2.80"
      - "*.wild IN TXT \"w\""
      - "x.wild IN MX 10 mx"
      - "a.b.wild IN A 192.0.2.81"
      - "*.walias IN CNAME mx"
      - "towild IN CNAME z.wild"
      - "srv IN SRV 0 0 80 mx"
      - "caa IN CAA 0 issue \"ca.example\""
      - "ptr IN PTR mx"
      - "hinfo IN HINFO \"pc\" \"linux\""
      - "upper IN CNAME MX"
      - "upperabs IN CNAME Mx.CONF.test."
      - "umx IN MX 10 MX"
      - "usrv IN SRV 0 0 80 Mx.Conf.Test."
      - "usub IN NS NS.USUB"
      - "ns.usub IN A 192.0.2.8"
      - "uptr IN PTR \\077X"
      - "a\\.b IN TXT \"one label\""
      - "x\\.y.wild IN TXT \"one label below a wildcard\""
      - "evil\\.sub IN TXT \"beside the delegation sub\""
      - "toevil IN CNAME EVIL\\.sub"
      - "@ IN NS ns.sub"
      - "mxsub IN MX 10 ns.sub"
      - "mxwild IN MX 10 host.wild"
      - "srvwild IN SRV 0 0 80 host.wild"
      - "*.wmx IN MX 10 mx"
      - "*.wmx IN MX 20 host.wild"
      - "sib IN NS ns.sib"
      - "sib IN NS mx"
      - "sib IN NS ns.sub"
      - "sib IN NS host.wild"
      - "sib IN NS alias"
      - "sib IN NS ns.other.example."
      - "ns.sib IN A 192.0.2.10"
      - "tosib IN CNAME host.sib"
%[1]s
edges:
  - {name: edge-a, region: west, hostname: edge-a.conf.test, address: 10.9.0.1}
apps:
  - name: shop
    fqdn: shop.conf.test
    ttl: 5
    pools:
      - {name: p1, endpoints: [{address: "127.0.0.11:8081"}, {address: "127.0.0.12:8081"}, {address: "[2001:db8::11]:8081"}]}
  - name: web
    fqdn: web.conf.test
    ingress: [edge-a]
    pools: [{name: p1, endpoints: [{address: "127.0.0.11:80"}]}]
`

// bigTXT gives big.conf.test a TXT RRset larger than 1232 bytes.
func bigTXT() string {
	var b strings.Builder
	for i := range 24 {
		fmt.Fprintf(&b, "      - \"big IN TXT \\\"%02d %s\\\"\"\n", i, strings.Repeat("x", 60))
	}
	return strings.TrimRight(b.String(), "\n")
}

// transport is one way of sending a query.
type transport struct {
	name string
	tcp  bool
	// edns is the advertised UDP size; 0 sends no OPT record.
	edns uint16
	do   bool
}

var transports = []transport{
	{name: "udp"}, {name: "udp+edns1232", edns: 1232}, {name: "udp+edns512", edns: 512},
	{name: "udp+edns4096+do", edns: 4096, do: true}, {name: "tcp", tcp: true, edns: 1232},
}

// intendedDifferences are the ways Detour's replies may differ from Knot's, each a deliberate
// choice with its RFC reason: a reply pair that differs is normalised by every entry that
// applies, in order, and must then be equal. Everything else must match as sent.
var intendedDifferences = []struct {
	reason string
	// normalise reports whether the entry applies to the query, sent over TCP or UDP, and if so
	// makes the replies agree on the point in question.
	normalise func(q, detour, knot *dns.Msg, tcp bool) bool
}{
	{reason: "Detour copies CD from the query as RFC 4035 §3.1.6 says the name server side MUST; Knot 3.2 clears it",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			if !q.CheckingDisabled || !detour.CheckingDisabled || knot.CheckingDisabled {
				return false
			}
			detour.CheckingDisabled = false
			return true
		}},
	{reason: "Knot 3.2 adds a target's addresses once for every NS, MX, SRV or HTTPS record naming it, so that two records of one target repeat them; " +
		"Detour adds them once (RFC 2181 §5: \"servers should suppress such duplicates\")",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			var once []dns.RR
			for _, rr := range knot.Extra {
				if !slices.ContainsFunc(once, func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) {
					once = append(once, rr)
				}
			}
			if len(once) == len(knot.Extra) {
				return false
			}
			knot.Extra = once
			return true
		}},
	{reason: "to ANY both send one RRset (RFC 8482 §4.1: the responder chooses which, by local criteria): Detour an address RRset where the name has one, " +
		"Knot 3.2 the RRset of the lowest type, so that at a name with AAAA records and an RRset of a lower type than 28 (NS, MX, TXT…) but no A or CNAME " +
		"Detour answers the AAAA records (truncated, TC, where they do not fit) and Knot the other",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			one := func(rrs []dns.RR) uint16 {
				if len(rrs) == 0 {
					return 0
				}
				t := rrs[0].Header().Rrtype
				for _, rr := range rrs {
					if rr.Header().Rrtype != t || !strings.EqualFold(rr.Header().Name, q.Question[0].Name) {
						return 0
					}
				}
				return t
			}
			kt := one(knot.Answer)
			// Detour's AAAA records, or nothing with TC: they did not fit where Knot's did.
			aaaa := one(detour.Answer) == dns.TypeAAAA || detour.Truncated && !knot.Truncated && len(detour.Answer)+len(detour.Ns) == 0
			if q.Question[0].Qtype != dns.TypeANY || detour.Rcode != dns.RcodeSuccess || knot.Rcode != dns.RcodeSuccess ||
				!aaaa || kt == 0 || kt >= dns.TypeAAAA || kt == dns.TypeA || kt == dns.TypeCNAME {
				return false
			}
			// Knot's reply as it would be had it chosen the AAAA records.
			knot.Answer, knot.Truncated = detour.Answer, detour.Truncated
			takeAdditional(knot, detour)
			return true
		}},
	{reason: "a UDP reply too large for the client's buffer leaves out the additional RRsets that do not fit, without TC (RFC 2181 §9): " +
		"Knot 3.2 also leaves out the AAAA, SVCB and HTTPS records of a name whose A records it left out, Detour keeps them where they fit",
		normalise: func(q, detour, knot *dns.Msg, tcp bool) bool {
			sections := func(m *dns.Msg) string { return strings.ToLower(render(&dns.Msg{Answer: m.Answer, Ns: m.Ns})) }
			if tcp || detour.Truncated || knot.Truncated || sections(detour) != sections(knot) {
				return false
			}
			key := func(rr dns.RR) string { return strings.ToLower(rr.String()) }
			kept, hasA := map[string]bool{}, map[string]bool{}
			for _, rr := range knot.Extra {
				kept[key(rr)] = true
			}
			for _, rr := range append(slices.Clone(detour.Extra), knot.Extra...) {
				if rr.Header().Rrtype == dns.TypeA {
					hasA[strings.ToLower(rr.Header().Name)] = true
				}
			}
			var only []dns.RR
			for _, rr := range detour.Extra {
				if !kept[key(rr)] {
					only = append(only, rr)
				}
			}
			if len(only) == 0 || len(detour.Extra)-len(only) != len(knot.Extra) {
				return false
			}
			for _, rr := range only {
				if t := rr.Header().Rrtype; t != dns.TypeAAAA && t != dns.TypeSVCB && t != dns.TypeHTTPS || hasA[strings.ToLower(rr.Header().Name)] {
					return false
				}
			}
			knot.Extra = append(knot.Extra, only...)
			return true
		}},
	{reason: "a name in a record takes the spelling of the earlier name its compression points to (RFC 1035 §4.1.4), the question's among them: miekg/dns points it at " +
		"any earlier name that ends it, Knot 3.2 only into the name written last, so that to a question spelt in mixed case the two may spell a name in other cases; " +
		"names compare without regard to case (RFC 4343 §3), and both echo the question, which a resolver checks (0x20), as sent",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			if len(q.Question) != 1 || q.Question[0].Name == strings.ToLower(q.Question[0].Name) || !slices.Equal(detour.Question, knot.Question) {
				return false
			}
			records := func(r *dns.Msg) string { _, rest, _ := strings.Cut(render(r), "\n"); return rest }
			if records(detour) == records(knot) {
				return false
			}
			d, k := detour.Copy(), knot.Copy()
			lowerNames(d)
			lowerNames(k)
			if records(d) != records(k) {
				return false
			}
			lowerNames(detour)
			lowerNames(knot)
			return true
		}},
	{reason: "a compressed name may point into any earlier name (RFC 1035 §4.1.4): miekg/dns points it at any, Knot 3.2 only into the name written last, " +
		"so that over UDP Detour's reply may be the shorter: where Detour's fits the client's buffer whole, and would not uncompressed, Knot's may leave out " +
		"additional records or be truncated (TC), every record it keeps one of Detour's",
		normalise: func(q, detour, knot *dns.Msg, tcp bool) bool {
			limit := 512
			if o := q.IsEdns0(); o != nil {
				limit = max(512, min(int(o.UDPSize()), 1232))
			}
			// The lengths as packed: Len overestimates a compressed message by a few bytes.
			length := func(compress bool) int {
				m := detour.Copy()
				m.Compress = compress
				b, err := m.Pack()
				if err != nil {
					return math.MaxInt
				}
				return len(b)
			}
			if tcp || detour.Truncated || length(true) > limit || length(false) <= limit && !knot.Truncated || detour.Rcode != knot.Rcode {
				return false
			}
			// Knot's records, and Detour's, in lower case and without the OPT record.
			lowered := func(rrs []dns.RR) []string {
				var out []string
				for _, rr := range rrs {
					if rr.Header().Rrtype != dns.TypeOPT {
						out = append(out, strings.ToLower(rr.String()))
					}
				}
				return out
			}
			fewer := false
			for _, sec := range [][2][]dns.RR{{detour.Answer, knot.Answer}, {detour.Ns, knot.Ns}, {detour.Extra, knot.Extra}} {
				d, k := lowered(sec[0]), lowered(sec[1])
				for _, rr := range k {
					if !slices.Contains(d, rr) {
						return false
					}
				}
				fewer = fewer || len(k) < len(d)
			}
			if !fewer {
				return false
			}
			knot.Truncated, knot.Answer, knot.Ns = false, detour.Answer, detour.Ns
			takeAdditional(knot, detour)
			return true
		}},
	{reason: "to a reply whose answer does not fit the client's buffer both set TC, and the client asks again over TCP (RFC 2181 §9: it ignores what a truncated reply holds): " +
		"Knot 3.2 keeps the RRsets that fit (the first CNAME records of a chain), Detour sends the question alone",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			records := func(m *dns.Msg) int {
				return len(m.Answer) + len(m.Ns) + len(slices.DeleteFunc(slices.Clone(m.Extra), isOPT))
			}
			if !detour.Truncated || !knot.Truncated || detour.Rcode != knot.Rcode || records(detour) > 0 || records(knot) == 0 {
				return false
			}
			knot.Answer, knot.Ns = nil, nil
			knot.Extra = slices.DeleteFunc(knot.Extra, notOPT)
			return true
		}},
	{reason: "Knot 3.2 follows a CNAME chain for 5 records and answers them alone (NOERROR, no SOA); Detour follows it to its end, " +
		"as RFC 1034 §4.3.2 step 3a does with no limit, and answers what is there (data, NODATA, NXDOMAIN or a referral), " +
		"truncated (TC, the question alone) over UDP where that does not fit the client's buffer and Knot's five records do",
		normalise: func(q, detour, knot *dns.Msg, tcp bool) bool {
			const knotChain = 5
			if len(knot.Answer) != knotChain || len(knot.Ns) > 0 || knot.Rcode != dns.RcodeSuccess || knot.Truncated ||
				slices.ContainsFunc(knot.Extra, notOPT) ||
				slices.ContainsFunc(knot.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeCNAME }) {
				return false
			}
			if !tcp && detour.Truncated && detour.Rcode == dns.RcodeSuccess && len(detour.Answer)+len(detour.Ns) == 0 &&
				!slices.ContainsFunc(detour.Extra, notOPT) {
				knot.Truncated, knot.Answer = true, nil
				return true
			}
			if detour.Truncated || len(detour.Answer) <= knotChain || detour.Answer[knotChain].Header().Rrtype != dns.TypeCNAME {
				return false
			}
			for i, rr := range knot.Answer {
				if !strings.EqualFold(rr.String(), detour.Answer[i].String()) {
					return false
				}
			}
			// Knot's reply as it would be had it followed the chain on.
			knot.Rcode, knot.Answer, knot.Ns = detour.Rcode, detour.Answer, detour.Ns
			takeAdditional(knot, detour)
			return true
		}},
	{reason: "Detour answers FORMERR to a client subnet whose address has more octets than its source prefix covers, bits set beyond it or a scope prefix " +
		"(RFC 7871 §6: such a query SHOULD get FORMERR, and SCOPE PREFIX-LENGTH MUST be 0 in a query); Knot 3.2 masks the address, zeroes the scope and answers",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			if detour.Rcode != dns.RcodeFormatError || knot.Rcode == dns.RcodeFormatError || !forgivenECS(q) {
				return false
			}
			// Knot's reply as the FORMERR it would be: no record but the OPT record, without the
			// client subnet it echoed.
			knot.Rcode, knot.Authoritative = dns.RcodeFormatError, false
			knot.Answer, knot.Ns, knot.Extra = nil, nil, slices.DeleteFunc(knot.Extra, notOPT)
			if opt := knot.IsEdns0(); opt != nil {
				opt.Option = slices.DeleteFunc(opt.Option, func(o dns.EDNS0) bool { return o.Option() == dns.EDNS0SUBNET })
			}
			return true
		}},
	{reason: "Detour cuts a BADKEY reply too large for the client to the question and OPT record with TC, so that the client asks again over TCP (RFC 1035 §4.2.1, RFC 8945 §5.3); " +
		"Knot 3.2 answers SERVFAIL, the error of its failing to add the TSIG record, and the client learns nothing of the key",
		normalise: func(q, detour, knot *dns.Msg, _ bool) bool {
			if q.IsTsig() == nil || detour.Rcode != dns.RcodeNotAuth || !detour.Truncated || knot.Rcode != dns.RcodeServerFailure || knot.Truncated {
				return false
			}
			detour.Rcode, detour.Truncated = dns.RcodeServerFailure, false
			return true
		}},
}

// forgivenECS reports whether q carries a client subnet option that Knot 3.2 reads and Detour
// answers FORMERR: its family and prefixes valid and its address long enough, but with octets
// past its source prefix, bits set beyond it, or a scope prefix. Knot reads the octets the
// source prefix covers, masks them and answers at scope 0.
func forgivenECS(q *dns.Msg) bool {
	opt := q.IsEdns0()
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		local, ok := o.(*dns.EDNS0_LOCAL)
		if !ok || local.Code != dns.EDNS0SUBNET || len(local.Data) < 4 {
			continue
		}
		d := local.Data
		bits := map[uint16]int{1: 32, 2: 128}[binary.BigEndian.Uint16(d)]
		source, scope := int(d[2]), int(d[3])
		if bits > 0 && source <= bits && scope <= bits && len(d)-4 >= (source+7)/8 && !parseECS(d, &query{}) {
			return true
		}
	}
	return false
}

// lowerNames spells the owner names of m's records and the names in their data in lower case.
func lowerNames(m *dns.Msg) {
	for _, rrs := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range rrs {
			rr.Header().Name = strings.ToLower(rr.Header().Name)
			switch rr := rr.(type) {
			case *dns.NS:
				rr.Ns = strings.ToLower(rr.Ns)
			case *dns.CNAME:
				rr.Target = strings.ToLower(rr.Target)
			case *dns.MX:
				rr.Mx = strings.ToLower(rr.Mx)
			case *dns.SRV:
				rr.Target = strings.ToLower(rr.Target)
			case *dns.PTR:
				rr.Ptr = strings.ToLower(rr.Ptr)
			case *dns.SOA:
				rr.Ns, rr.Mbox = strings.ToLower(rr.Ns), strings.ToLower(rr.Mbox)
			}
		}
	}
}

// intended reports whether Detour's reply d and Knot's reply k to q are the same once every
// entry of intendedDifferences that applies has normalised them, and returns the reasons of
// those that applied: none for replies equal as sent.
func intended(q, d, k *dns.Msg, tcp bool) (reasons []string, ok bool) {
	if render(d) == render(k) {
		return nil, true
	}
	for _, diff := range intendedDifferences {
		if diff.normalise(q, d, k, tcp) {
			reasons = append(reasons, diff.reason)
		}
	}
	return reasons, len(reasons) > 0 && render(d) == render(k)
}

// render is a reply as the differential test compares it: the header fields, the question,
// and every section with its records sorted (the order of records in a section carries no
// meaning, RFC 2181 §5), and the OPT record's options sorted (their order carries none either,
// RFC 6891 §6.1.2).
func render(r *dns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s opcode=%d aa=%v tc=%v rd=%v ra=%v ad=%v cd=%v\n", rcodeName(r), r.Opcode,
		r.Authoritative, r.Truncated, r.RecursionDesired, r.RecursionAvailable, r.AuthenticatedData, r.CheckingDisabled)
	for _, q := range r.Question {
		fmt.Fprintf(&b, "q: %s\n", q.String())
	}
	for _, sec := range []struct {
		name string
		rrs  []dns.RR
	}{{"an", r.Answer}, {"ns", r.Ns}, {"ar", r.Extra}} {
		var lines []string
		for _, rr := range sec.rrs {
			s := rr.String()
			if opt, ok := rr.(*dns.OPT); ok {
				var options []string
				for _, o := range opt.Option {
					options = append(options, fmt.Sprintf("%d:%s", o.Option(), o.String()))
				}
				slices.Sort(options)
				s = fmt.Sprintf("OPT udp=%d do=%v version=%d rcode=%d options=%v", opt.UDPSize(), opt.Do(), opt.Version(), opt.ExtendedRcode(), options)
			}
			lines = append(lines, sec.name+": "+s)
		}
		slices.Sort(lines)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// mixCase spells name with every other letter in upper case.
func mixCase(name string) string {
	b := []byte(name)
	for i, c := range b {
		if i%2 == 0 && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestDetourAnswersAsKnotDoesOverAGeneratedCorpus(t *testing.T) {
	detour, knot, owners := differentialPeers(t)

	names := []string{"nope.conf.test.", "q.wild.conf.test.", "p.q.wild.conf.test.", "c.b.wild.conf.test.", "y.x.wild.conf.test.",
		"any.walias.conf.test.", "host.sub.conf.test.", "a.b.sub.conf.test.", "x.sub2.conf.test.", "example.com.", "test.",
		"b.conf.test.", "a.b.conf.test.", "y.wild.conf.test.", "x.y.wild.conf.test.", "x.usub.conf.test.", "a.wmx.conf.test.", "host.sib.conf.test."}
	for name := range owners {
		names = append(names, name, "nx."+name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT, dns.TypeCNAME,
		dns.TypeSRV, dns.TypePTR, dns.TypeCAA, dns.TypeDS, dns.TypeANY, dns.TypeHINFO}

	c := newAsker(t)

	sent, explained := 0, map[string]int{}
	var unexplained []string
	for i, name := range names {
		for j, qt := range types {
			for k, tp := range transports {
				qname := name
				if (i+j+k)%3 == 0 {
					qname = mixCase(name)
				}
				m := new(dns.Msg)
				m.SetQuestion(qname, qt)
				m.RecursionDesired = (i+k)%2 == 0
				m.CheckingDisabled = (j+k)%5 == 0
				if tp.edns > 0 {
					m.SetEdns0(tp.edns, tp.do)
				}
				sent++
				diff := c.compareWithKnot(detour, knot, m, tp, explained)
				if diff == "" {
					continue
				}
				if len(unexplained) < 40 {
					unexplained = append(unexplained, diff)
				} else {
					unexplained = append(unexplained, "")
				}
			}
		}
	}
	t.Logf("%d queries to each server (%d names × %d types × %d transports), %d replies differ only as intended:", sent, len(names), len(types), len(transports), sumValues(explained))
	for why, n := range explained {
		t.Logf("  %d × %s", n, why)
	}
	if sent < 2000 {
		t.Errorf("want a corpus of at least 2,000 queries, sent %d", sent)
	}
	if len(unexplained) > 0 {
		t.Errorf("%d replies differ from Knot's without an intended reason; the first:\n%s", len(unexplained), strings.Join(slices.DeleteFunc(unexplained, func(s string) bool { return s == "" }), "\n"))
	}
}

// asker sends the differential tests' queries: over UDP, or over one TCP connection per server
// that it keeps for the test.
type asker struct {
	t     *testing.T
	conns map[string]*dns.Conn
}

func newAsker(t *testing.T) *asker { return &asker{t: t, conns: map[string]*dns.Conn{}} }

// ask sends m to server as tp says and returns the reply.
func (a *asker) ask(server string, tp transport, m *dns.Msg) *dns.Msg {
	t := a.t
	t.Helper()
	if tp.tcp {
		c := a.conns[server]
		if c == nil {
			nc, err := net.DialTimeout("tcp", server, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c = &dns.Conn{Conn: nc}
			a.conns[server] = c
			t.Cleanup(func() { c.Close() })
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			t.Fatalf("tcp %s: %v", server, err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("tcp %s: %v", server, err)
		}
		return r
	}
	// Over UDP a query is asked up to three times, 2 s apart, as dig and resolvers do: on a
	// loaded machine a server starved of CPU may let a datagram go.
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 65535}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var r *dns.Msg
		if r, _, err = c.Exchange(m, server); err == nil {
			return r
		}
		t.Logf("udp %s %s: attempt %d: %v", server, m.Question[0].String(), attempt, err)
	}
	t.Fatalf("udp %s %s: no reply to three attempts: %v", server, m.Question[0].String(), err)
	return nil
}

// compareWithKnot sends m to Detour and to Knot as tp says and compares their replies as the
// differential tests do: equal as sent, or once the intendedDifferences that apply have
// normalised them, whose reasons it counts in explained. For replies that differ beyond them it
// returns the question and both replies as a failure shows them; "" for replies that agree.
func (a *asker) compareWithKnot(detour, knot string, m *dns.Msg, tp transport, explained map[string]int) string {
	a.t.Helper()
	d, k := a.ask(detour, tp, m), a.ask(knot, tp, m)
	rd, rk := render(d), render(k)
	why, ok := intended(m, d, k, tp.tcp)
	for _, w := range why {
		explained[w]++
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("%s over %s:\n--- detour\n%s--- knot\n%s", m.Question[0].String(), tp.name, rd, rk)
}

// differentialPeers starts Detour with the differential zone and Knot with what Detour
// transfers of it, so that both serve the same content, and returns their addresses and the
// zone's owner names.
func differentialPeers(t *testing.T) (detour, knot string, owners map[string]bool) {
	t.Helper()
	return peers(t, "conf.test", fmt.Sprintf(differentialConfig, bigTXT(), knottest.NSID))
}

// peers starts Detour with the configuration conf and Knot with what Detour transfers of its
// zone name, and returns their addresses and the zone's owner names.
func peers(t *testing.T, name, conf string) (detour, knot string, owners map[string]bool) {
	t.Helper()
	knottest.Skip(t)
	js := eventstest.Start(t)
	detour = startServer(t, js, eventstest.Config(t, conf), "").srv.Addr()
	axfr := new(dns.Msg)
	axfr.SetAxfr(name + ".")
	ch, err := new(dns.Transfer).In(axfr, detour)
	if err != nil {
		t.Fatal(err)
	}
	var file strings.Builder
	owners = map[string]bool{}
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
		for _, rr := range env.RR {
			owners[rr.Header().Name] = true
			file.WriteString(rr.String() + "\n")
		}
	}
	return detour, knottest.Start(t, knottest.Zone{Name: name, File: file.String()}).Addr, owners
}

// TestDetourRejectsMalformedQueriesAsKnotDoes sends both servers queries that break a rule
// of the message format, EDNS, TSIG or zone transfers, over UDP and TCP from a client allowed
// to transfer the zone: Detour must answer each with Knot's rcode and, like Knot, no records.
func TestDetourRejectsMalformedQueriesAsKnotDoes(t *testing.T) {
	detour, knot, _ := differentialPeers(t)
	pack := func(m *dns.Msg) []byte {
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	query := func() *dns.Msg { return newQuery("mx.conf.test.", dns.TypeA) }
	transfer := func(qtype uint16, ns ...dns.RR) *dns.Msg {
		m := newQuery("conf.test.", qtype)
		m.Ns = ns
		return m
	}
	soa := func(name string) dns.RR {
		rr, err := dns.NewRR(name + " 0 IN SOA ns1.conf.test. hostmaster.conf.test. 1 3600 600 604800 5")
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	signed := func(m *dns.Msg) *dns.Msg {
		m.SetTsig("nobody.", dns.HmacSHA256, 300, time.Now().Unix())
		return m
	}
	tsigThenOPT := signed(query())
	tsigThenOPT.Extra = append(tsigThenOPT.Extra, withEDNS(new(dns.Msg), 1232).Extra[0])
	lyingCount := pack(query())
	lyingCount[11] = 1
	v1 := withEDNS(transfer(dns.TypeAXFR), 1232)
	v1.IsEdns0().SetVersion(1)
	twoOPTs := withEDNS(transfer(dns.TypeAXFR), 1232)
	twoOPTs.Extra = append(twoOPTs.Extra, withEDNS(new(dns.Msg), 1232).Extra[0])
	a, err := dns.NewRR("conf.test. 0 IN A 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	// The client's SOA cut after its two names, its length saying so: no serial.
	cutSOA := pack(transfer(dns.TypeIXFR, soa("conf.test.")))
	rdlength := len(cutSOA) - 20 - 2 - len("ns1.conf.test.") - 1 - len("hostmaster.conf.test.") - 1
	binary.BigEndian.PutUint16(cutSOA[rdlength:], binary.BigEndian.Uint16(cutSOA[rdlength:])-20)
	cutSOA = cutSOA[:len(cutSOA)-20]
	opcode := func(op int) *dns.Msg {
		m := newQuery("conf.test.", dns.TypeSOA)
		m.Opcode = op
		return m
	}
	cases := []struct {
		name string
		p    []byte
		// tcpOnly marks a transfer Knot does not give over UDP.
		tcpOnly bool
	}{
		{name: "bytes after the last record", p: append(pack(query()), 1, 2, 3)},
		{name: "bytes after the OPT record", p: append(pack(withEDNS(query(), 1232)), 0)},
		{name: "a section count larger than the records sent", p: lyingCount},
		{name: "a TSIG record before the OPT record", p: pack(tsigThenOPT)},
		{name: "a query signed with an unknown key", p: pack(signed(query()))},
		{name: "an AXFR signed with an unknown key", p: pack(signed(transfer(dns.TypeAXFR))), tcpOnly: true},
		{name: "an IXFR signed with an unknown key", p: pack(signed(transfer(dns.TypeIXFR, soa("conf.test.")))), tcpOnly: true},
		{name: "an AXFR of EDNS version 1", p: pack(v1), tcpOnly: true},
		{name: "an AXFR with two OPT records", p: pack(twoOPTs), tcpOnly: true},
		{name: "an IXFR without the client's SOA", p: pack(transfer(dns.TypeIXFR))},
		{name: "an IXFR whose SOA is another zone's", p: pack(transfer(dns.TypeIXFR, soa("example.com.")))},
		{name: "an IXFR with an A record for its SOA", p: pack(transfer(dns.TypeIXFR, a))},
		{name: "an IXFR whose SOA is cut after its names", p: cutSOA},
		{name: "a NOTIFY signed with an unknown key", p: pack(signed(opcode(dns.OpcodeNotify)))},
		{name: "an UPDATE signed with an unknown key", p: pack(signed(opcode(dns.OpcodeUpdate)))},
	}
	ask := func(server, network string, p []byte) string {
		r, err := exchangeWire(t, server, network, p)
		if err != nil {
			return err.Error()
		}
		signed := ""
		if sig := r.IsTsig(); sig != nil {
			signed = ", TSIG " + dns.RcodeToString[int(sig.Error)]
		}
		return fmt.Sprintf("%s, %d answer records%s", dns.RcodeToString[r.Rcode], len(r.Answer), signed)
	}
	for _, tc := range cases {
		for _, network := range []string{"udp", "tcp"} {
			if tc.tcpOnly && network == "udp" {
				continue
			}
			if d, k := ask(detour, network, tc.p), ask(knot, network, tc.p); d != k {
				t.Errorf("%s over %s: Detour answers %s, Knot %s", tc.name, network, d, k)
			}
		}
	}
}

// exchangeWire sends the message p, as it is, to server over network and returns the reply, or
// an error saying that none came or that it does not parse. The query need not be one
// dns.Client would send: broken, or signed with a key it does not hold.
func exchangeWire(t *testing.T, server, network string, p []byte) (*dns.Msg, error) {
	t.Helper()
	nc, err := net.DialTimeout(network, server, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &dns.Conn{Conn: nc, UDPSize: 65535}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	b, err := c.ReadMsgHeader(nil)
	if err != nil {
		return nil, errors.New("no reply")
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, errors.New("unparsable reply")
	}
	return r, nil
}

// TestErrorRepliesToEDNSQueriesMatchKnots sends both servers EDNS queries that earn an error,
// over UDP and TCP: Detour's reply, its OPT record and options included, must be Knot's, but
// for the differences intendedDifferences gives a reason for.
func TestErrorRepliesToEDNSQueriesMatchKnots(t *testing.T) {
	detour, knot, _ := differentialPeers(t)
	cases := []struct {
		name string
		req  *dns.Msg
	}{
		{name: "EDNS version 1 (RFC 6891 §6.1.3: BADVERS)", req: version(1, withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232))},
		{name: "EDNS version 1 asking for NSID (RFC 5001 §3: the identity is reported)",
			req: version(1, withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}))},
		{name: "signed with an unknown key, asking for NSID (RFC 8945 §5.2.2: NOTAUTH, BADKEY)",
			req: signedBy("nobody.", withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}))},
		{name: "signed with an unknown key, with a client subnet and asking for NSID (RFC 7871 §7.2.1: the subnet comes back, at scope 0)",
			req: signedBy("nobody.", withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2), &dns.EDNS0_NSID{Code: dns.EDNS0NSID}))},
		{name: "signed with an unknown key, with an IPv6 client subnet", req: signedBy("nobody.", withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232, ecs(2, 48, 0x20, 1, 0xd, 0xb8, 0, 1)))},
		{name: "a name outside the zones, with a client subnet (REFUSED)", req: withEDNS(newQuery("example.com.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2))},
		{name: "signed with an unknown key, the reply over 512 bytes and within the client's 1232",
			req: signedBy(longKey, withEDNS(newQuery(strings.Replace(longQuestion, "demo.test.", "conf.test.", 1), dns.TypeA), 1232))},
		{name: "signed with an unknown key, the reply larger than the client's 512 bytes",
			req: signedBy(longKey, withEDNS(newQuery(strings.Replace(longQuestion, "demo.test.", "conf.test.", 1), dns.TypeA), 512))},
	}
	// A client subnet that cannot be read (RFC 7871 §6), and those Knot reads and Detour does not,
	// beside NSID in either order: the identity is reported whatever the order (RFC 5001 §3).
	nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID}
	for _, bad := range []struct {
		name string
		ecs  dns.EDNS0
	}{
		{"of an unknown family", ecs(3, 8, 10)},
		{"too short to hold a family and prefixes", &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1}}},
		{"whose address is shorter than its source prefix", ecs(1, 24, 10)},
		{"whose source prefix is longer than an IPv4 address", ecs(1, 33, 10, 1, 2, 3, 4, 5)},
		{"whose address is longer than its source prefix", ecs(1, 8, 10, 1)},
		{"with bits set beyond its source prefix", ecs(1, 12, 10, 0xff)},
		{"with a scope prefix", &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1, 24, 8, 10, 1, 2}}},
	} {
		for _, order := range []string{"after", "before"} {
			opts := []dns.EDNS0{bad.ecs, nsid}
			if order == "before" {
				opts = []dns.EDNS0{nsid, bad.ecs}
			}
			cases = append(cases, struct {
				name string
				req  *dns.Msg
			}{name: fmt.Sprintf("a client subnet %s, NSID asked for %s it", bad.name, order),
				req: withEDNS(newQuery("mx.conf.test.", dns.TypeA), 1232, opts...)})
		}
	}
	for _, tc := range cases {
		p, err := tc.req.Pack()
		if err != nil {
			t.Fatal(err)
		}
		for _, network := range []string{"udp", "tcp"} {
			d, err := exchangeWire(t, detour, network, p)
			if err != nil {
				t.Fatalf("%s over %s: Detour: %v", tc.name, network, err)
			}
			k, err := exchangeWire(t, knot, network, p)
			if err != nil {
				t.Fatalf("%s over %s: Knot: %v", tc.name, network, err)
			}
			rd, rk := render(d), render(k)
			if why, ok := intended(tc.req, d, k, network == "tcp"); !ok {
				t.Errorf("%s over %s:\n--- detour\n%s--- knot\n%s", tc.name, network, rd, rk)
			} else if len(why) > 0 {
				t.Logf("%s over %s differs as intended: %s", tc.name, network, strings.Join(why, "; "))
			}
		}
	}
}

// truncationConfig holds replies larger than a client's buffer: an MX and an SRV answer whose
// targets' addresses do not all fit beside them, a delegation whose glue does not fit, one whose
// glue and the addresses of its other name servers (in the zone, below the other delegation, at
// a wildcard; their NS records not in RFC 4034 §6.3 order) do not fit, the apex's NS answer whose
// targets' glue (below that delegation) does not fit, and a TXT answer that does not fit itself.
const truncationConfig = `
zones:
  - name: trunc.test
    nameservers: [{name: ns1.trunc.test, address: 127.0.0.53}]
    transfer_to: ["127.0.0.1"]
    records:
%s
`

// truncationRecords are the records of truncationConfig.
func truncationRecords() string {
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "      - \"mail IN MX %d m%02d\"\n      - \"srv IN SRV %d 0 25 m%02d\"\n", i, i, i, i)
		fmt.Fprintf(&b, "      - \"m%02d IN A 192.0.2.%d\"\n      - \"m%02d IN AAAA 2001:db8::%d\"\n", i, i+1, i, i+1)
	}
	for i := range 10 {
		fmt.Fprintf(&b, "      - \"deleg IN NS ns%02d.deleg\"\n      - \"@ IN NS ns%02d.deleg\"\n", i, i)
		fmt.Fprintf(&b, "      - \"ns%02d.deleg IN A 192.0.2.%d\"\n      - \"ns%02d.deleg IN AAAA 2001:db8::%d\"\n", i, 100+i, i, 100+i)
	}
	for i := range 6 {
		fmt.Fprintf(&b, "      - \"mixed IN NS ns%02d.mixed\"\n", i)
		fmt.Fprintf(&b, "      - \"ns%02d.mixed IN A 192.0.2.%d\"\n      - \"ns%02d.mixed IN AAAA 2001:db8::%d\"\n", i, 200+i, i, 200+i)
	}
	// Knot's compressor points a name only into the one written last: in the order Knot keeps
	// them, these names pack as tightly that way as they do in miekg/dns, so that both replies
	// are of one size at every step.
	for _, target := range []string{"a.mixed", "sibling.deleg", "server2", "server1", "relay.wild"} {
		fmt.Fprintf(&b, "      - \"mixed IN NS %s\"\n", target)
	}
	b.WriteString("      - \"a.mixed IN A 192.0.2.250\"\n      - \"deleg IN NS sibling.deleg\"\n")
	for i, name := range []string{"sibling.deleg", "server1", "server2", "*.wild"} {
		fmt.Fprintf(&b, "      - \"%s IN A 192.0.2.%d\"\n      - \"%s IN AAAA 2001:db8::%d\"\n", name, 240+i, name, 240+i)
	}
	for i := range 24 {
		fmt.Fprintf(&b, "      - \"big IN TXT \\\"%02d %s\\\"\"\n", i, strings.Repeat("x", 60))
	}
	return strings.TrimRight(b.String(), "\n")
}

// TestDetourTruncatesAsKnotDoesAtEveryBufferSize asks both servers, over UDP without EDNS and
// with every buffer size from 480 to 1300, for answers whose additional addresses, referral
// glue or answer records do not all fit: Detour must send what Knot sends. Addresses beside an
// answer are left out, RRset by RRset, without TC (RFC 2181 §9), and so are those of a
// referral's name servers outside its cut (RFC 9471 §3.2); a referral whose glue below its cut
// does not fit and an answer that does not fit are truncated with TC (RFC 9471 §3.1, RFC 1035
// §4.1.1).
func TestDetourTruncatesAsKnotDoesAtEveryBufferSize(t *testing.T) {
	detour, knot, _ := peers(t, "trunc.test", fmt.Sprintf(truncationConfig, truncationRecords()))
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 65535}
	ask := func(server string, m *dns.Msg) *dns.Msg {
		t.Helper()
		r, _, err := c.Exchange(m, server)
		if err != nil {
			t.Fatalf("udp %s %s: %v", server, m.Question[0].String(), err)
		}
		return r
	}
	differ := 0
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"mail.trunc.test.", dns.TypeMX}, {"srv.trunc.test.", dns.TypeSRV}, {"x.deleg.trunc.test.", dns.TypeA},
		{"deleg.trunc.test.", dns.TypeNS}, {"big.trunc.test.", dns.TypeTXT}, {"trunc.test.", dns.TypeNS},
		{"x.mixed.trunc.test.", dns.TypeA}, {"mixed.trunc.test.", dns.TypeNS},
	} {
		for size := 479; size <= 1300; size++ {
			m := newQuery(q.name, q.qtype)
			if size >= 480 {
				m.SetEdns0(uint16(size), false)
			}
			if d, k := render(ask(detour, m)), render(ask(knot, m)); d != k {
				if differ++; differ <= 5 {
					t.Errorf("%s %s with a buffer of %d bytes (479: no EDNS):\n--- detour\n%s--- knot\n%s", q.name, dns.TypeToString[q.qtype], size, d, k)
				}
			}
		}
	}
	if differ > 5 {
		t.Errorf("and %d more replies differ", differ-5)
	}
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestAZoneTransferToAnEDNSQueryCarriesOPTAsKnotsDoes: RFC 6891 §7 has a responder put an OPT
// record in its reply to a query that had one; Detour's AXFR and IXFR replies carried none.
// Knot's first message has one; every message of Detour's must.
func TestAZoneTransferToAnEDNSQueryCarriesOPTAsKnotsDoes(t *testing.T) {
	detour, knot, _ := differentialPeers(t)
	soa, err := dns.NewRR("conf.test. 0 IN SOA ns1.conf.test. hostmaster.conf.test. 1 3600 600 604800 5")
	if err != nil {
		t.Fatal(err)
	}
	// messages returns the messages of server's reply to m, up to the one that ends the
	// transfer (the second SOA).
	messages := func(server string, m *dns.Msg) []*dns.Msg {
		nc, err := net.DialTimeout("tcp", server, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		c := &dns.Conn{Conn: nc}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		var out []*dns.Msg
		for soas := 0; soas < 2; {
			r, err := c.ReadMsg()
			if err != nil {
				t.Fatalf("%s from %s: after %d messages: %v", dns.TypeToString[m.Question[0].Qtype], server, len(out), err)
			}
			out = append(out, r)
			for _, rr := range r.Answer {
				if rr.Header().Rrtype == dns.TypeSOA {
					soas++
				}
			}
			if r.Rcode != dns.RcodeSuccess {
				break
			}
		}
		return out
	}
	for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		m := withEDNS(newQuery("conf.test.", qtype), 1232)
		if qtype == dns.TypeIXFR {
			m.Ns = []dns.RR{soa} // serial 1: older than either server keeps, so the whole zone
		}
		name := dns.TypeToString[qtype]
		k := messages(knot, m)
		if k[0].Rcode != dns.RcodeSuccess || k[0].IsEdns0() == nil {
			t.Fatalf("%s: Knot's first message: %s, OPT %v; the comparison needs a transfer with OPT", name, dns.RcodeToString[k[0].Rcode], k[0].IsEdns0() != nil)
		}
		d := messages(detour, m)
		for i, r := range d {
			if r.Rcode != dns.RcodeSuccess || r.IsEdns0() == nil {
				t.Errorf("%s: Detour's message %d of %d: %s, OPT %v; want NOERROR and an OPT record, as Knot's first message has",
					name, i+1, len(d), dns.RcodeToString[r.Rcode], r.IsEdns0() != nil)
			}
		}
	}
}

// isOPT and notOPT tell a reply's OPT record from its additional records.
func isOPT(rr dns.RR) bool  { return rr.Header().Rrtype == dns.TypeOPT }
func notOPT(rr dns.RR) bool { return !isOPT(rr) }

// takeAdditional gives knot's reply detour's additional records beside its own OPT record.
func takeAdditional(knot, detour *dns.Msg) {
	knot.Extra = append(slices.DeleteFunc(slices.Clone(detour.Extra), isOPT), slices.DeleteFunc(knot.Extra, notOPT)...)
}

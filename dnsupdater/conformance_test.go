package dnsupdater

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

const conformanceConfig = `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}, {name: ns2.demo.test, address: "::53"}]
    transfer_to: ["127.0.0.1"]
    records:
      - "www IN CNAME shop"
      - "txt IN TXT \"hello\""
      - "x.deep IN A 192.0.2.9"
      - "sub IN NS ns.sub"
      - "ns.sub IN A 192.0.2.7"
      - "mail IN MX 10 mx.demo.test."
      - "mx IN A 192.0.2.25"
      - "*.wild IN A 192.0.2.80"
      - "*.walias IN CNAME shop"
      - "togeo IN CNAME geo"
      - "shopmail IN MX 10 shop"
      - "geomail IN MX 10 geo"
      - "upper IN CNAME MX"
      - "a\\.b.wild IN TXT \"one label\""
      - "kid IN NS ns.kid"
      - "ns.kid IN A 192.0.2.8"
      - "sib IN NS ns.sub"
      - "sib IN NS mx"
      - "sib IN NS x.wild"
      - "tosib IN CNAME host.sib"
%s
  - name: other.test
    transfer_to: ["10.0.0.0/8"]
  - name: kid.demo.test
    nameservers: [{name: ns.kid.demo.test, address: 192.0.2.8}]
edges:
  - {name: edge-a, region: west, hostname: edge-a.demo.test, address: 10.9.0.1}
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - {name: p1, endpoints: [{address: "127.0.0.11:8081"}, {address: "[2001:db8::11]:8081"}]}
  - name: web
    fqdn: web.demo.test
    ingress: [edge-a]
    pools: [{name: p1, endpoints: [{address: "127.0.0.11:80"}]}]
  - name: geo
    fqdn: geo.demo.test
    policy: source
    sources: [{cidrs: ["10.1.0.0/16"], pools: [west]}]
    default_pools: [east]
    pools:
      - {name: west, endpoints: [{address: "10.0.0.1:80"}]}
      - {name: east, endpoints: [{address: "10.0.1.1:80"}]}
`

// bigRecords give big.demo.test a TXT RRset larger than 512 bytes, relays.demo.test an MX
// RRset whose targets' addresses do not all fit beside it in 512 bytes, and the delegation
// wide.demo.test glue that does not fit beside its NS records in 512 bytes.
func bigRecords() string {
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "      - \"big IN TXT \\\"%02d %s\\\"\"\n", i, strings.Repeat("x", 60))
		fmt.Fprintf(&b, "      - \"relays IN MX %d r%02d\"\n      - \"r%02d IN A 192.0.2.%d\"\n      - \"r%02d IN AAAA 2001:db8::%d\"\n", i, i, i, i+1, i, i+1)
		fmt.Fprintf(&b, "      - \"wide IN NS ns%02d.wide\"\n      - \"ns%02d.wide IN A 192.0.2.%d\"\n      - \"ns%02d.wide IN AAAA 2001:db8::%d\"\n", i, i, 100+i, i, 100+i)
	}
	return strings.TrimRight(b.String(), "\n")
}

func conformanceServer(t *testing.T) string {
	t.Helper()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, fmt.Sprintf(conformanceConfig, bigRecords()))
	return startServer(t, js, cfg, "").srv.Addr()
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func withEDNS(m *dns.Msg, size uint16, opts ...dns.EDNS0) *dns.Msg {
	m.SetEdns0(size, false)
	o := m.IsEdns0()
	o.Option = append(o.Option, opts...)
	return m
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}

func hasType(rrs []dns.RR, t uint16) bool {
	return slices.ContainsFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype == t })
}

func TestServerFollowsTheRulesOfAnAuthoritativeServer(t *testing.T) {
	addr := conformanceServer(t)
	tests := []struct {
		name  string
		req   func() *dns.Msg
		check func(t *testing.T, r *dns.Msg) // r is the reply over the transport under test
		udp   bool                           // only over UDP
	}{
		{name: "an app name is answered authoritatively without recursion", req: func() *dns.Msg { return newQuery("shop.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.RecursionAvailable || !r.RecursionDesired {
					t.Errorf("want NOERROR, AA, RA clear, RD copied; got %v", r.MsgHdr)
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, []string{"shop.demo.test.\t5\tIN\tA\t127.0.0.11"}) {
					t.Errorf("answer: got %v", got)
				}
			}},
		{name: "AAAA comes from the IPv6 endpoints", req: func() *dns.Msg { return newQuery("shop.demo.test.", dns.TypeAAAA) },
			check: func(t *testing.T, r *dns.Msg) {
				if got := addrs(r); !slices.Equal(got, []string{"2001:db8::11"}) {
					t.Errorf("answer: got %v", got)
				}
			}},
		{name: "names match whatever their case and the question keeps it", req: func() *dns.Msg { return newQuery("ShOp.DEMO.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Question[0].Name != "ShOp.DEMO.test." || len(r.Answer) != 1 {
					t.Errorf("want the question echoed as sent and one answer, got %v", r)
				}
			}},
		{name: "a name without the type is NODATA with the SOA in authority", req: func() *dns.Msg { return newQuery("shop.demo.test.", dns.TypeMX) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
					t.Errorf("want NOERROR, AA, no answer, SOA in authority; got %v", r)
				}
				if soa := r.Ns[0].(*dns.SOA); soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
					t.Errorf("SOA in a negative answer: want MINIMUM 5 and TTL min(3600, 5) = 5 (RFC 2308 §3), got %v", soa)
				}
			}},
		{name: "an unknown name is NXDOMAIN with the SOA in authority", req: func() *dns.Msg { return newQuery("nope.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
					t.Errorf("want NXDOMAIN, AA, SOA in authority; got %v", r)
				}
			}},
		{name: "an empty non-terminal is NODATA, not NXDOMAIN", req: func() *dns.Msg { return newQuery("deep.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !hasType(r.Ns, dns.TypeSOA) {
					t.Errorf("want NODATA; got %v", r)
				}
			}},
		{name: "a name outside the zones is REFUSED", req: func() *dns.Msg { return newQuery("example.com.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeRefused || r.Authoritative || len(r.Answer) != 0 {
					t.Errorf("want REFUSED without AA; got %v", r)
				}
			}},
		{name: "the apex has an SOA", req: func() *dns.Msg { return newQuery("demo.test.", dns.TypeSOA) },
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Ns != "ns1.demo.test." || r.Answer[0].(*dns.SOA).Serial == 0 {
					t.Errorf("want the SOA; got %v", r)
				}
			}},
		{name: "the apex NS answer carries the glue", req: func() *dns.Msg { return newQuery("demo.test.", dns.TypeNS) },
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 2 || !hasType(r.Extra, dns.TypeA) || !hasType(r.Extra, dns.TypeAAAA) {
					t.Errorf("want 2 NS and the A and AAAA glue; got %v", r)
				}
			}},
		{name: "a delegated name gets a referral with glue", req: func() *dns.Msg { return newQuery("host.sub.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeSuccess || r.Authoritative || len(r.Answer) != 0 || !hasType(r.Ns, dns.TypeNS) || !hasType(r.Extra, dns.TypeA) {
					t.Errorf("want a referral (no AA, NS in authority, glue); got %v", r)
				}
			}},
		{name: "a CNAME is followed inside the zone", req: func() *dns.Msg { return newQuery("www.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || addrs(r)[0] != "127.0.0.11" {
					t.Errorf("want the CNAME and shop's address; got %v", r)
				}
			}},
		{name: "an ingress app answers a CNAME to the edge with the edge's address", req: func() *dns.Msg { return newQuery("web.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 2 || r.Answer[0].(*dns.CNAME).Target != "edge-a.demo.test." || addrs(r)[0] != "10.9.0.1" {
					t.Errorf("want CNAME to edge-a and its address; got %v", r)
				}
			}},
		{name: "RRSIG at an ingress app's name is its own NODATA, not the CNAME followed (RFC 2181 §10.1)", req: func() *dns.Msg { return newQuery("web.demo.test.", dns.TypeRRSIG) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 0 || !hasType(r.Ns, dns.TypeSOA) {
					t.Errorf("want NODATA with the SOA; got %v", r)
				}
			}},
		{name: "ANY is answered with one RRset (RFC 8482)", req: func() *dns.Msg { return newQuery("demo.test.", dns.TypeANY) },
			check: func(t *testing.T, r *dns.Msg) {
				types := map[uint16]bool{}
				for _, rr := range r.Answer {
					types[rr.Header().Rrtype] = true
				}
				if r.Rcode != dns.RcodeSuccess || len(types) != 1 {
					t.Errorf("want exactly one RRset; got %v", r)
				}
			}},
		{name: "EDNS is answered with an OPT record and Detour's UDP size", req: func() *dns.Msg { return withEDNS(newQuery("shop.demo.test.", dns.TypeA), 4096) },
			check: func(t *testing.T, r *dns.Msg) {
				o := r.IsEdns0()
				if o == nil || o.UDPSize() != 1232 || o.Version() != 0 || len(r.Answer) != 1 {
					t.Errorf("want an OPT of size 1232 and the answer; got %v", r)
				}
			}},
		{name: "an EDNS version above 0 is answered BADVERS", req: func() *dns.Msg {
			m := withEDNS(newQuery("shop.demo.test.", dns.TypeA), 1232)
			m.IsEdns0().SetVersion(1)
			return m
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || len(r.Answer) != 0 {
				t.Errorf("want BADVERS with an OPT and no answer; got rcode %s %v", dns.RcodeToString[r.Rcode], r)
			}
		}},
		{name: "unknown EDNS options are ignored", req: func() *dns.Msg {
			return withEDNS(newQuery("shop.demo.test.", dns.TypeA), 1232, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}}, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || len(r.IsEdns0().Option) != 0 {
				t.Errorf("want the answer, and no option echoed; got %v", r)
			}
		}},
		{name: "EDNS Client Subnet chooses the source pool and is echoed with its scope", req: func() *dns.Msg {
			return withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.1.7.0").To4()})
		}, check: func(t *testing.T, r *dns.Msg) {
			if got := addrs(r); !slices.Equal(got, []string{"10.0.0.1"}) {
				t.Errorf("answer for a client in 10.1.0.0/16: want [10.0.0.1], got %v", got)
			}
			var ecs *dns.EDNS0_SUBNET
			for _, o := range r.IsEdns0().Option {
				if s, ok := o.(*dns.EDNS0_SUBNET); ok {
					ecs = s
				}
			}
			if ecs == nil || ecs.SourceNetmask != 24 || ecs.SourceScope != 24 || !ecs.Address.Equal(net.ParseIP("10.1.7.0")) {
				t.Errorf("want the subnet echoed with scope 24; got %v", ecs)
			}
		}},
		{name: "without a client subnet the source policy uses the client address", req: func() *dns.Msg { return newQuery("geo.demo.test.", dns.TypeA) },
			check: func(t *testing.T, r *dns.Msg) {
				if got := addrs(r); !slices.Equal(got, []string{"10.0.1.1"}) {
					t.Errorf("answer for 127.0.0.1 (no rule): want the default pool [10.0.1.1], got %v", got)
				}
			}},
		{name: "a malformed client subnet is FORMERR", req: func() *dns.Msg {
			return withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 8, Address: net.ParseIP("10.1.7.0").To4()})
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeFormatError {
				t.Errorf("want FORMERR for a non-zero scope in a query; got %s", dns.RcodeToString[r.Rcode])
			}
		}},
		{name: "a large answer over UDP without EDNS is truncated", udp: true, req: func() *dns.Msg { return newQuery("big.demo.test.", dns.TypeTXT) },
			check: func(t *testing.T, r *dns.Msg) {
				if !r.Truncated || len(r.Answer) != 0 || len(r.Question) != 1 {
					t.Errorf("want TC with the question only; got %v", r.MsgHdr)
				}
			}},
		{name: "unknown opcodes are NOTIMP", req: func() *dns.Msg {
			m := newQuery("shop.demo.test.", dns.TypeA)
			m.Opcode = dns.OpcodeStatus
			return m
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeStatus {
				t.Errorf("want NOTIMP; got %v", r.MsgHdr)
			}
		}},
		{name: "dynamic updates are REFUSED", req: func() *dns.Msg {
			m := new(dns.Msg)
			m.SetUpdate("demo.test.")
			m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP("192.0.2.1")}})
			return m
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeRefused {
				t.Errorf("want REFUSED; got %v", r.MsgHdr)
			}
		}},
		{name: "other classes are REFUSED", req: func() *dns.Msg {
			m := newQuery("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeRefused {
				t.Errorf("want REFUSED; got %v", r.MsgHdr)
			}
		}},
		{name: "AXFR over UDP is REFUSED", udp: true, req: func() *dns.Msg { return newQuery("demo.test.", dns.TypeAXFR) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeRefused {
					t.Errorf("want REFUSED; got %v", r.MsgHdr)
				}
			}},
		{name: "AXFR from a client not in transfer_to is REFUSED", req: func() *dns.Msg { return newQuery("other.test.", dns.TypeAXFR) },
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeRefused {
					t.Errorf("want REFUSED; got %v", r.MsgHdr)
				}
			}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			if tt.udp && network == "tcp" {
				continue
			}
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				req := tt.req()
				r := exchange(t, addr, network, req)
				if r.Id != req.Id || !r.Response {
					t.Fatalf("want a response with id %d, got %v", req.Id, r.MsgHdr)
				}
				tt.check(t, r)
			})
		}
	}
}

func TestLargeAnswersArriveWholeOverTCP(t *testing.T) {
	addr := conformanceServer(t)
	r := ask(t, addr, "tcp", "big.demo.test.", dns.TypeTXT)
	if r.Truncated || len(r.Answer) != 12 {
		t.Errorf("want all 12 TXT records over TCP, got %d (TC=%v)", len(r.Answer), r.Truncated)
	}
	r = exchange(t, addr, "udp", withEDNS(newQuery("big.demo.test.", dns.TypeTXT), 4096))
	if r.Truncated || len(r.Answer) != 12 {
		t.Errorf("want all 12 TXT records over UDP with EDNS 4096 (they fit 1232), got %d (TC=%v)", len(r.Answer), r.Truncated)
	}
}

func TestAXFRTransfersTheWholeZoneToAllowedClients(t *testing.T) {
	addr := conformanceServer(t)
	tr := &dns.Transfer{}
	m := newQuery("demo.test.", dns.TypeAXFR)
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatalf("axfr: %v", err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("axfr: %v", env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	if len(rrs) < 3 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("want the zone between two SOAs, got %v", rrStrings(rrs))
	}
	all := strings.Join(rrStrings(rrs), "\n")
	for _, want := range []string{"shop.demo.test.\t5\tIN\tA\t127.0.0.11", "web.demo.test.\t30\tIN\tCNAME\tedge-a.demo.test.", "edge-a.demo.test.\t3600\tIN\tA\t10.9.0.1", "txt.demo.test.\t3600\tIN\tTXT\t\"hello\""} {
		if !strings.Contains(all, want) {
			t.Errorf("transfer lacks %q:\n%s", want, all)
		}
	}
}

func TestIXFRAnswersTheDifferencesSinceTheClientsSerial(t *testing.T) {
	js := eventstest.Start(t)
	conf := strings.Replace(demoConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	addr := startServer(t, js, eventstest.Config(t, conf), "").srv.Addr()
	ixfr := func(from uint32) []string { return ixfrFrom(t, addr, from) }
	s0 := serial(t, addr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != s0 }, "serial moves")
	s1 := serial(t, addr)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, addr) != s1 }, "serial moves again")
	s2 := serial(t, addr)
	soa := func(s uint32) string { return fmt.Sprintf("demo.test. SOA %d", s) }

	tests := []struct {
		name string
		from uint32
		want []string
	}{
		{name: "a current client gets one SOA", from: s2, want: []string{soa(s2)}},
		{name: "a client one version behind gets that step", from: s1,
			want: []string{soa(s2), soa(s1), "shop.demo.test. A 127.0.0.12", soa(s2), "shop.demo.test. A 127.0.0.11", soa(s2)}},
		{name: "a client two versions behind gets both steps", from: s0,
			want: []string{soa(s2), soa(s0), "shop.demo.test. A 127.0.0.11", soa(s1), "shop.demo.test. A 127.0.0.12",
				soa(s1), "shop.demo.test. A 127.0.0.12", soa(s2), "shop.demo.test. A 127.0.0.11", soa(s2)}},
		{name: "a client older than the history gets the whole zone", from: s0 - 1000,
			want: []string{soa(s2), "demo.test. NS", "ns1.demo.test. A 127.0.0.1", "shop.demo.test. A 127.0.0.11", soa(s2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ixfr(tt.from); !slices.Equal(got, tt.want) {
				t.Errorf("IXFR from %d:\nwant %q\ngot  %q", tt.from, tt.want, got)
			}
		})
	}
	m := new(dns.Msg)
	m.SetIxfr("demo.test.", s0, "ns1.demo.test.", "hostmaster.demo.test.")
	if r := exchange(t, addr, "udp", m); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != s2 {
		t.Errorf("IXFR over UDP: want the current SOA only, got %v", r)
	}
}

func TestTCPAnswersPipelinedQueriesOnOneConnection(t *testing.T) {
	addr := conformanceServer(t)
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	names := []string{"shop.demo.test.", "nope.demo.test.", "www.demo.test."}
	var out []byte
	for i, n := range names {
		m := newQuery(n, dns.TypeA)
		m.Id = uint16(100 + i)
		b, _ := m.Pack()
		out = append(out, byte(len(b)>>8), byte(len(b)))
		out = append(out, b...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	for i := range names {
		var l [2]byte
		if _, err := readFull(c, l[:]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := readFull(c, b); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.Id != uint16(100+i) || !strings.EqualFold(r.Question[0].Name, names[i]) {
			t.Errorf("reply %d: want id %d for %s, got %d for %s", i, 100+i, names[i], r.Id, r.Question[0].Name)
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestGarbageDoesNotStopTheServer(t *testing.T) {
	addr := conformanceServer(t)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range [][]byte{{}, {1}, []byte("garbage that is not dns"), {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1}} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if got := addrs(ask(t, addr, "udp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Errorf("after garbage: want [127.0.0.11], got %v", got)
	}
}

func TestRoundRobinRotatesAndWeightedFollowsTheWeightsOverTheWire(t *testing.T) {
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: rr
    fqdn: rr.demo.test
    policy: round_robin
    pools: [{name: p, endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}, {address: "10.0.0.3:80"}]}]
  - name: api
    fqdn: api.demo.test
    policy: weighted
    max_answers: 1
    pools: [{name: p, endpoints: [{address: "10.0.0.1:80", weight: 3}, {address: "10.0.0.2:80", weight: 1}]}]
`)
	addr := startServer(t, js, cfg, "").srv.Addr()
	conn, err := dns.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(name string) []string {
		if err := conn.WriteMsg(newQuery(name, dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.A).A.String())
		}
		return out
	}
	firsts := map[string]int{}
	for range 3 {
		got := ask("rr.demo.test.")
		if len(got) != 3 {
			t.Fatalf("round robin: want all 3 addresses, got %v", got)
		}
		firsts[got[0]]++
	}
	if len(firsts) != 3 {
		t.Errorf("round robin: want each address first once in 3 answers, got %v", firsts)
	}
	counts := map[string]int{}
	const n = 2000
	for range n {
		got := ask("api.demo.test.")
		if len(got) != 1 {
			t.Fatalf("weighted with max_answers 1: want one address, got %v", got)
		}
		counts[got[0]]++
	}
	// 3:1 → 75 %; 2000 draws put the share within 0.70–0.80 with overwhelming probability.
	if share := float64(counts["10.0.0.1"]) / n; share < 0.70 || share > 0.80 {
		t.Errorf("weighted 3:1: want about 75%% for 10.0.0.1, got %.1f%% (%v)", share*100, counts)
	}
}

func TestOneClientCannotTakeEveryTCPConnection(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig+"dns:\n  tcp_per_client: 2\n"), "")
	dial := func(from string) *dns.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", h.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &dns.Conn{Conn: c}
	}
	answers := func(c *dns.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if err := c.WriteMsg(newQuery("shop.demo.test.", dns.TypeA)); err != nil {
			return false
		}
		r, err := c.ReadMsg()
		return err == nil && len(r.Answer) == 1
	}
	first, second := dial("127.0.0.1"), dial("127.0.0.1")
	if !answers(first) || !answers(second) {
		t.Fatal("the first two connections of a client must be answered")
	}
	if answers(dial("127.0.0.1")) {
		t.Errorf("a third connection of the same client must be closed (tcp_per_client 2)")
	}
	if !answers(dial("127.0.0.2")) {
		t.Errorf("another client must still be answered")
	}
	first.Close()
	eventstest.Eventually(t, 2*time.Second, func() bool { return answers(dial("127.0.0.1")) },
		"a client that closed a connection may open another")
}

// holdEveryTCPSlot opens, as the hostile review did, dns.tcp_per_client (32) connections from
// each of 127.0.0.2–127.0.0.33, maxTCPConns in all, and has each answer a query in the order
// returned, so that the first has waited longest for its next one.
func holdEveryTCPSlot(t *testing.T, addr string) []*dns.Conn {
	t.Helper()
	conns := make([]*dns.Conn, 0, maxTCPConns)
	for i := range maxTCPConns {
		from := net.IPv4(127, 0, 0, byte(2+i/32))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d from %s: %v", i, from, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, &dns.Conn{Conn: c})
	}
	for i, c := range conns {
		if !answersSOA(c) {
			t.Fatalf("connection %d of %d was not answered", i, len(conns))
		}
	}
	return conns
}

// answersSOA reports whether c answers a query for demo.test.'s SOA within two seconds.
func answersSOA(c *dns.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.WriteMsg(newQuery("demo.test.", dns.TypeSOA)); err != nil {
		return false
	}
	r, err := c.ReadMsg()
	return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
}

func TestASecondaryTransfersWhileOrdinaryClientsHoldEveryTCPSlot(t *testing.T) {
	addr := conformanceServer(t)
	conns := holdEveryTCPSlot(t, addr)
	ch, err := (&dns.Transfer{DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second}).In(newQuery("demo.test.", dns.TypeAXFR), addr)
	if err != nil {
		t.Fatalf("axfr from 127.0.0.1 (in transfer_to): %v", err)
	}
	var rrs int
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("axfr from 127.0.0.1 (in transfer_to): %v", env.Error)
		}
		rrs += len(env.RR)
	}
	if rrs < 3 {
		t.Fatalf("axfr: want the zone between two SOAs, got %d records", rrs)
	}
	// The secondary took a reserved slot: no ordinary connection was closed to make room.
	if !answersSOA(conns[0]) {
		t.Errorf("the connection idle longest was closed; the secondary should have used the reserve")
	}
}

func TestANewcomerTakesTheSlotOfTheConnectionIdleLongestWhenEveryTCPSlotIsHeld(t *testing.T) {
	addr := conformanceServer(t)
	conns := holdEveryTCPSlot(t, addr)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 34)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !answersSOA(&dns.Conn{Conn: c}) {
		t.Fatal("a newcomer from 127.0.0.34 must be answered when idle connections can make room")
	}
	_ = conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[0].ReadMsg(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection idle longest: want it closed by the server, got %v", err)
	}
	if !answersSOA(conns[1]) {
		t.Errorf("only the connection idle longest should have been closed")
	}
}

// TestANewcomerIsAnsweredWhenEveryTCPSlotIsHeldByClientsThatDoNotRead holds every slot of a
// server of four with connections that send queries without reading a reply until the server
// stops reading them: it waits on each to take the replies before. A newcomer must still find
// room, as it does beside connections that wait for their next query. The server's connections
// send from a buffer of a few kilobytes, as under memory pressure, rather than one the kernel
// grows to 4 MiB as the client acknowledges its window probes.
func TestANewcomerIsAnsweredWhenEveryTCPSlotIsHeldByClientsThatDoNotRead(t *testing.T) {
	const slots = 4
	srv := fourSlotServer(t, bigRecords())
	// Replies of about a kilobyte to queries of 40 bytes, sent a hundred at a time.
	p, err := newQuery("big.demo.test.", dns.TypeTXT).Pack()
	if err != nil {
		t.Fatal(err)
	}
	var queries []byte
	for range 100 {
		queries = append(append(queries, byte(len(p)>>8), byte(len(p))), p...)
	}
	for i := range slots {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		// Queries until they are not taken within 200 ms: the server no longer reads, as it
		// waits for the client to take the replies before.
		for deadline := time.Now().Add(10 * time.Second); ; {
			if time.Now().After(deadline) {
				t.Fatalf("connection %d: the server read every query for 10 s", i)
			}
			_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Write(queries); errors.Is(err, os.ErrDeadlineExceeded) {
				break
			} else if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !answersSOA(&dns.Conn{Conn: c}) {
		t.Fatal("a newcomer from 127.0.0.3 must be answered when every slot is held by a client that does not read")
	}
}

// hugeRecords is a TXT record set of about 50 KB, huge.demo.test.
func hugeRecords() string {
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "      - \"huge IN TXT \\\"%03d %s\\\"\"\n", i, strings.Repeat("x", 240))
	}
	return strings.TrimRight(b.String(), "\n")
}

// fourSlotServer runs a DNS server of conformanceConfig with records, whose TCP side has four
// slots and connections that send from buffers of 4 KiB (smallSendBuffers).
func fourSlotServer(t *testing.T, records string) *Server {
	t.Helper()
	js := eventstest.Start(t)
	srv, err := New(Options{
		JS: js.JS, Config: eventstest.Config(t, fmt.Sprintf(conformanceConfig, records)), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), CredentialDirs: tempCredentialDirs(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.tcpSem = make(chan struct{}, 4)
	srv.ls.tcp = smallSendBuffers{srv.ls.tcp}
	eventstest.Run(t, "dns server", srv.Run)
	return srv
}

// smallSendBuffers is a listener whose connections send from a buffer of 4 KiB.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestAnIPv6ClientIsCountedByItsSlash64(t *testing.T) {
	for _, c := range []struct{ from, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"},
		{"2001:db8:1:2::1", "2001:db8:1:2::"},
		{"2001:db8:1:3::1", "2001:db8:1:3::"},
		{"fe80::1%lo", "fe80::"},
		{"::1", "::"},
	} {
		if got := tcpClient(netip.MustParseAddr(c.from)); got != netip.MustParseAddr(c.want) {
			t.Errorf("tcpClient(%s) = %s, want %s", c.from, got, c.want)
		}
	}
}

// ixfrFrom returns the records of an IXFR of demo.test. from serial, each as name, type and
// (for SOA and A) its serial or address.
func ixfrFrom(t *testing.T, addr string, from uint32) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetIxfr("demo.test.", from, "ns1.demo.test.", "hostmaster.demo.test.")
	ch, err := (&dns.Transfer{}).In(m, addr)
	if err != nil {
		t.Fatalf("ixfr: %v", err)
	}
	var out []string
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("ixfr: %v", env.Error)
		}
		for _, rr := range env.RR {
			s := rr.Header().Name + " " + dns.TypeToString[rr.Header().Rrtype]
			switch rr := rr.(type) {
			case *dns.SOA:
				s += fmt.Sprintf(" %d", rr.Serial)
			case *dns.A:
				s += " " + rr.A.String()
			}
			out = append(out, s)
		}
	}
	return out
}

// TestTransfersBreakingARuleGetTheErrorNotTheZone sends transfer queries that break a rule over
// TCP from a client the zone may be transferred to: each must get the error the same query gets
// over UDP, in one message without records, not the zone.
func TestTransfersBreakingARuleGetTheErrorNotTheZone(t *testing.T) {
	addr := conformanceServer(t)
	axfr := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetAxfr("demo.test.")
		return m
	}
	sign := func(m *dns.Msg) *dns.Msg {
		m.SetTsig("nobody.", dns.HmacSHA256, 300, time.Now().Unix())
		return m
	}
	ixfr := new(dns.Msg)
	ixfr.SetIxfr("demo.test.", 1, "ns1.demo.test.", "hostmaster.demo.test.")
	chaos := axfr()
	chaos.Question[0].Qclass = dns.ClassCHAOS
	v1 := withEDNS(axfr(), 1232)
	v1.IsEdns0().SetVersion(1)
	twoOPTs := withEDNS(axfr(), 1232)
	twoOPTs.Extra = append(twoOPTs.Extra, withEDNS(new(dns.Msg), 1232).Extra[0])
	answer := axfr()
	answer.Answer = ixfr.Ns
	ixfrOfOther := new(dns.Msg)
	ixfrOfOther.SetIxfr("demo.test.", 1, "ns1.demo.test.", "hostmaster.demo.test.")
	ixfrOfOther.Ns[0].Header().Name = "example.com."
	tests := []struct {
		name  string
		req   *dns.Msg
		rcode int
	}{
		{name: "an AXFR signed with an unknown key is NOTAUTH (RFC 8945 §5.2.2)", req: sign(axfr()), rcode: dns.RcodeNotAuth},
		{name: "an IXFR signed with an unknown key is NOTAUTH", req: sign(ixfr.Copy()), rcode: dns.RcodeNotAuth},
		{name: "an AXFR of class CH is REFUSED", req: chaos, rcode: dns.RcodeRefused},
		{name: "an AXFR of EDNS version 1 is BADVERS (RFC 6891 §6.1.3)", req: v1, rcode: dns.RcodeBadVers},
		{name: "an AXFR with two OPT records is FORMERR (RFC 6891 §6.1.1)", req: twoOPTs, rcode: dns.RcodeFormatError},
		{name: "an AXFR with an answer record is FORMERR", req: answer, rcode: dns.RcodeFormatError},
		{name: "an IXFR whose SOA is another zone's is FORMERR (RFC 1995 §3)", req: ixfrOfOther, rcode: dns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c := &dns.Conn{Conn: nc}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			// Packed as is: a TSIG record goes out with no MAC, Detour holding no key.
			q, err := tt.req.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(q); err != nil {
				t.Fatal(err)
			}
			p, err := c.ReadMsgHeader(nil)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(p); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if r.Rcode != tt.rcode || len(r.Answer) > 0 {
				t.Errorf("want %s without records, got %s with %d answer records", dns.RcodeToString[tt.rcode], dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		})
	}
}

// TestATransferAskedWithAnOptionTheDecoderCannotReadIsTheZone asks for the zone over TCP, from
// a client the zone may be transferred to, with an EDNS option Detour does not use and the
// decoder cannot read: an empty ZONEVERSION, as RFC 9660 §3.1 has a client ask for the zone's
// version, and an LLQ option cut short. An option the server does not use is ignored (RFC 6891
// §6.1.2), as Knot ignores them: the AXFR is the zone between two SOAs, and an IXFR from a
// serial older than the history is the whole zone too, not the lone current SOA that tells a
// secondary it is up to date, nor REFUSED.
func TestATransferAskedWithAnOptionTheDecoderCannotReadIsTheZone(t *testing.T) {
	addr := conformanceServer(t)
	current := serial(t, addr)
	options := map[string]dns.EDNS0{
		"an empty ZONEVERSION": &dns.EDNS0_LOCAL{Code: dns.EDNS0ZONEVERSION},
		"an LLQ cut short":     &dns.EDNS0_LOCAL{Code: dns.EDNS0LLQ, Data: []byte{0, 1}},
	}
	for name, opt := range options {
		axfr := new(dns.Msg)
		axfr.SetAxfr("demo.test.")
		ixfr := new(dns.Msg)
		ixfr.SetIxfr("demo.test.", current-1000, "ns1.demo.test.", "hostmaster.demo.test.")
		for _, m := range []*dns.Msg{axfr, ixfr} {
			withEDNS(m, 1232, opt)
			t.Run(name+" "+dns.TypeToString[m.Question[0].Qtype], func(t *testing.T) {
				ch, err := (&dns.Transfer{}).In(m, addr)
				if err != nil {
					t.Fatalf("transfer: %v", err)
				}
				var rrs []dns.RR
				for env := range ch {
					if env.Error != nil {
						t.Fatalf("transfer: %v", env.Error)
					}
					rrs = append(rrs, env.RR...)
				}
				all := strings.Join(rrStrings(rrs), "\n")
				if len(rrs) < 3 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA ||
					!strings.Contains(all, "shop.demo.test.\t5\tIN\tA\t127.0.0.11") {
					t.Errorf("want the whole zone between two SOAs, got:\n%s", all)
				}
			})
		}
	}
}

// TestBatchedUDPRepliesCarryNoBytesOfTheOnesBefore sends long and short queries and short
// garbage in one burst, so that the server reads and answers them in batches through buffers
// it reuses: every reply must end where its last record does, and a short reply must be byte
// for byte the one the same query gets alone.
func TestBatchedUDPRepliesCarryNoBytesOfTheOnesBefore(t *testing.T) {
	addr := conformanceServer(t)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	read := func() []byte {
		t.Helper()
		b := make([]byte, 65535)
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("read reply: %v", err)
		}
		return b[:n]
	}
	pack := func(m *dns.Msg, id uint16) []byte {
		m.Id = id
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	short := func(id uint16) []byte { return pack(newQuery("shop.demo.test.", dns.TypeA), id) }
	if _, err := c.Write(short(1)); err != nil {
		t.Fatal(err)
	}
	alone := read()
	const rounds = 40
	for i := range rounds {
		id := uint16(100 + 3*i)
		for _, p := range [][]byte{
			pack(withEDNS(newQuery("big.demo.test.", dns.TypeTXT), 1232), id),
			short(id + 1),
			{byte((id + 2) >> 8), byte(id + 2), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // a header alone: FORMERR
		} {
			if _, err := c.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	big := 0
	for range 3 * rounds {
		b := read()
		if end := recordsEnd(b); end != len(b) {
			t.Fatalf("a reply of %d bytes whose records end at %d: %x", len(b), end, b)
		}
		id := uint16(b[0])<<8 | uint16(b[1])
		switch (id - 100) % 3 {
		case 0:
			big++
		case 1:
			want := append([]byte{b[0], b[1]}, alone[2:]...)
			if string(b) != string(want) {
				t.Fatalf("reply %d to the short query:\n%x\nwant, as it is alone:\n%x", id, b, want)
			}
		case 2:
			if len(b) != headerLen || b[3]&0x0F != dns.RcodeFormatError {
				t.Fatalf("reply %d to a header alone: want a 12-byte FORMERR, got %x", id, b)
			}
		}
	}
	if big == 0 {
		t.Error("no reply to the long queries")
	}
}

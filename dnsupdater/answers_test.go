package dnsupdater

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
)

// answersConfig holds the names the sections tests ask about.
const answersConfig = `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "mx IN A 192.0.2.25"
      - "alias IN CNAME mx"
      - "chain IN CNAME alias"
      - "dangling IN CNAME nothere"
      - "outside IN CNAME www.example.com."
      - "sub IN NS ns.sub"
      - "ns.sub IN A 192.0.2.7"
      - "deleg IN CNAME host.sub"
apps:
  - name: geo
    fqdn: geo.demo.test
    ttl: 30
    policy: source
    sources: [{cidrs: ["10.1.0.0/16"], pools: [west]}]
    default_pools: [east]
    pools:
      - {name: west, endpoints: [{address: "10.0.0.1:80"}]}
      - {name: east, endpoints: [{address: "10.0.1.1:80"}]}
`

// respondTo answers req from tab as a UDP query from remote, and returns the reply parsed and as
// sent; it fails the test when either does not pack or parse.
func respondTo(t *testing.T, tab *table, req *dns.Msg, remote netip.Addr) (*dns.Msg, []byte) {
	t.Helper()
	p, err := req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	b := newWorker(1).respond(tab, p, remote, false)
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return r, b
}

// sectionCase is a query and the sections its reply must have, as sections renders them.
type sectionCase struct {
	name string
	req  *dns.Msg
	want string
}

// checkSections asks tab every case's query from remote and compares the reply's sections.
func checkSections(t *testing.T, tab *table, remote netip.Addr, cases []sectionCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := respondTo(t, tab, tt.req, remote)
			if got := sections(r); got != tt.want {
				t.Errorf("query %s\nwant:\n%s\ngot:\n%s", tt.req.Question[0].String(), tt.want, got)
			}
		})
	}
}

// sections renders a reply as the lines a reader compares: header, then every record.
func sections(r *dns.Msg) string {
	var b strings.Builder
	b.WriteString(rcodeName(r))
	if r.Opcode != dns.OpcodeQuery {
		name, ok := dns.OpcodeToString[r.Opcode]
		if !ok {
			name = fmt.Sprintf("OPCODE%d", r.Opcode)
		}
		b.WriteString(" " + name)
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{r.Authoritative, "aa"}, {r.Truncated, "tc"}, {r.RecursionDesired, "rd"}, {r.CheckingDisabled, "cd"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	for _, sec := range []struct {
		name string
		rrs  []dns.RR
	}{{"an", r.Answer}, {"ns", r.Ns}, {"ar", r.Extra}} {
		for _, rr := range sec.rrs {
			s := strings.ReplaceAll(rr.String(), "\t", " ")
			if opt, ok := rr.(*dns.OPT); ok {
				s = "OPT"
				for _, o := range opt.Option {
					if n, ok := o.(*dns.EDNS0_NSID); ok {
						id, _ := hex.DecodeString(n.Nsid)
						s += fmt.Sprintf(" NSID %q", id)
						continue
					}
					s += " " + o.String()
				}
			}
			if sig, ok := rr.(*dns.TSIG); ok {
				s = fmt.Sprintf("TSIG %s error %s mac %q", sig.Hdr.Name, dns.RcodeToString[int(sig.Error)], sig.MAC)
			}
			fmt.Fprintf(&b, "\n%s: %s", sec.name, s)
		}
	}
	return b.String()
}

// rcodeName names the rcode of the reply r. miekg/dns names 16 BADSIG, the TSIG error of that
// number; in the header and OPT record of a reply it is BADVERS (RFC 6891 §9).
func rcodeName(r *dns.Msg) string {
	if r.Rcode == dns.RcodeBadVers && r.IsEdns0() != nil {
		return "BADVERS"
	}
	return dns.RcodeToString[r.Rcode]
}

const negSOA = "demo.test. 5 IN SOA ns1.demo.test. hostmaster.demo.test. 1 3600 600 604800 5"

func answersTable(t testing.TB, conf string) *table {
	t.Helper()
	static, err := zone.Compile(eventstest.Config(t, conf))
	if err != nil {
		t.Fatal(err)
	}
	tab := buildTable(static.Project(state.NewView(), map[string]uint32{"demo.test.": 1}), nil)
	tab.identity = []byte("dns-1.example")
	return tab
}

func chaos(name string) *dns.Msg {
	m := newQuery(name, dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	return m
}

// version sets the EDNS version of m, which has an OPT record.
func version(v uint8, m *dns.Msg) *dns.Msg {
	m.IsEdns0().SetVersion(v)
	return m
}

// signedBy signs m with the key named key, which Detour does not hold.
func signedBy(key string, m *dns.Msg) *dns.Msg {
	m.SetTsig(key, dns.HmacSHA256, 300, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	return m
}

// longQuestion asks for a name of 215 bytes; signed by longKey, of 253 bytes, it earns a BADKEY
// reply of 534 bytes, which carries both names.
var longQuestion, longKey = strings.Repeat(strings.Repeat("q", 50)+".", 4) + "demo.test.", strings.Repeat(strings.Repeat("k", 62)+".", 4)

func ecs(family uint16, source uint8, addr ...byte) *dns.EDNS0_LOCAL {
	return &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: append([]byte{byte(family >> 8), byte(family), source, 0}, addr...)}
}

func TestAnswersCarryTheSectionsTheRFCsAskFor(t *testing.T) {
	tab := answersTable(t, answersConfig)
	signed := newQuery("mx.demo.test.", dns.TypeA)
	signed.SetTsig("nobody.", dns.HmacSHA256, 300, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	unknownOpcode := newQuery("mx.demo.test.", dns.TypeA)
	unknownOpcode.Opcode, unknownOpcode.CheckingDisabled = 3, true
	update := newQuery("demo.test.", dns.TypeSOA)
	update.Opcode, update.CheckingDisabled = dns.OpcodeUpdate, true
	signedNotify := newQuery("demo.test.", dns.TypeSOA)
	signedNotify.Opcode = dns.OpcodeNotify
	signedNotify.SetTsig("nobody.", dns.HmacSHA256, 300, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	signedUpdate := newQuery("demo.test.", dns.TypeSOA)
	signedUpdate.Opcode = dns.OpcodeUpdate
	signedUpdate.SetTsig("nobody.", dns.HmacSHA256, 300, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	tests := []sectionCase{
		{name: "NXDOMAIN carries the SOA with TTL min(SOA TTL, MINIMUM) (RFC 2308 §3)", req: newQuery("nope.demo.test.", dns.TypeA),
			want: "NXDOMAIN aa rd\nns: " + negSOA},
		{name: "NODATA carries the SOA with the negative TTL", req: newQuery("mx.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "a CNAME chain is followed to its data", req: newQuery("chain.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: chain.demo.test. 3600 IN CNAME alias.demo.test.\nan: alias.demo.test. 3600 IN CNAME mx.demo.test.\nan: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "a CNAME chain ending in NODATA carries the SOA (RFC 2308 §2.2)", req: newQuery("alias.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: alias.demo.test. 3600 IN CNAME mx.demo.test.\nns: " + negSOA},
		{name: "RRSIG at a CNAME's name is the name's own NODATA, not followed (RFC 2181 §10.1)", req: newQuery("chain.demo.test.", dns.TypeRRSIG),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "NSEC at a CNAME's name is the name's own NODATA, not followed (RFC 4035 §2.5)", req: newQuery("alias.demo.test.", dns.TypeNSEC),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "a CNAME chain ending at no name is NXDOMAIN (RFC 6604)", req: newQuery("dangling.demo.test.", dns.TypeA),
			want: "NXDOMAIN aa rd\nan: dangling.demo.test. 3600 IN CNAME nothere.demo.test.\nns: " + negSOA},
		{name: "a CNAME out of the served zones ends with the CNAME", req: newQuery("outside.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: outside.demo.test. 3600 IN CNAME www.example.com."},
		{name: "a CNAME into delegated space ends in a referral (RFC 1034 §4.3.2 3b)", req: newQuery("deleg.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: deleg.demo.test. 3600 IN CNAME host.sub.demo.test.\nns: sub.demo.test. 3600 IN NS ns.sub.demo.test.\nar: ns.sub.demo.test. 3600 IN A 192.0.2.7"},
		{name: "an ECS subnet wider than a rule gets the rule's length as scope (RFC 7871 §7.2.1)",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(1, 8, 10)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 10.0.0.0/8/16"},
		{name: "an ECS subnet inside a rule keeps its own length as scope",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.0.1\nar: OPT 10.1.2.0/24/24"},
		{name: "an ECS subnet beside every rule keeps its own length as scope",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(1, 16, 192, 168)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 192.168.0.0/16/16"},
		{name: "an IPv4-mapped IPv6 subnet inside a rule gets the rule's pool, scoped to the subnet in IPv6 terms",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(2, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.0.1\nar: OPT 10.1.2.0/120/120"},
		{name: "an IPv4-mapped IPv6 subnet wider than an IPv4 rule gets the rule's length in IPv6 terms as scope, 96 + 16 (RFC 7871 §7.2.1)",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(2, 104, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 10.0.0.0/104/112"},
		{name: "an IPv4-mapped IPv6 subnet beside every rule keeps its own length as scope",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(2, 112, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 192.168.0.0/112/112"},
		{name: "an IPv6 subnet holding every IPv4-mapped address is scoped to the IPv4 rules it covers, in IPv6 terms",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(2, 64, 0, 0, 0, 0, 0, 0, 0, 0)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT [::]/64/112"},
		{name: "an IPv6 subnet beside the IPv4-mapped addresses keeps its own length as scope",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(2, 48, 0x20, 1, 0xd, 0xb8, 0, 1)),
			want: "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT [2001:db8:1::]/48/48"},
		{name: "an ECS address longer than its source prefix is FORMERR (RFC 7871 §6)",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(1, 8, 10, 1)),
			want: "FORMERR rd\nar: OPT"},
		{name: "an ECS address shorter than its source prefix is FORMERR",
			req:  withEDNS(newQuery("nope.demo.test.", dns.TypeA), 1232, ecs(1, 24, 10)),
			want: "FORMERR rd\nar: OPT"},
		{name: "an ECS option too short to decode is FORMERR with an OPT record (RFC 6891 §7: one without says no EDNS)",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1}}),
			want: "FORMERR rd\nar: OPT"},
		{name: "an ECS option of an unknown family is FORMERR with an OPT record",
			req:  withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(3, 8, 10)),
			want: "FORMERR rd\nar: OPT"},
		{name: "a malformed client subnet is FORMERR reporting the identity asked for after it (RFC 5001 §3), as Knot does",
			req:  withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, ecs(3, 8, 10), &dns.EDNS0_NSID{Code: dns.EDNS0NSID}),
			want: "FORMERR rd\nar: OPT NSID \"dns-1.example\""},
		{name: "and before it",
			req:  withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}, ecs(3, 8, 10)),
			want: "FORMERR rd\nar: OPT NSID \"dns-1.example\""},
		{name: "a second client subnet is FORMERR reporting the identity asked for after it",
			req:  withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, ecs(1, 8, 10), ecs(1, 8, 10), &dns.EDNS0_NSID{Code: dns.EDNS0NSID}),
			want: "FORMERR rd\nar: OPT NSID \"dns-1.example\""},
		{name: "a query signed with an unknown key is NOTAUTH with a BADKEY TSIG (RFC 8945 §5.2.2)", req: signed,
			want: "NOTAUTH rd\nar: TSIG nobody. error BADKEY mac \"\""},
		{name: "an unknown opcode is NOTIMP without RD or CD, its opcode copied (RFC 1035 §4.1.1)", req: unknownOpcode,
			want: "NOTIMP OPCODE3"},
		{name: "an UPDATE is REFUSED without RD or CD (RFC 2136 §2.2: zero in an UPDATE)", req: update,
			want: "REFUSED UPDATE"},
		{name: "a signed NOTIFY is NOTAUTH with a BADKEY TSIG, as a signed query (RFC 8945 §5.2), its opcode copied", req: signedNotify,
			want: "NOTAUTH NOTIFY\nar: TSIG nobody. error BADKEY mac \"\""},
		{name: "so is a signed UPDATE", req: signedUpdate,
			want: "NOTAUTH UPDATE\nar: TSIG nobody. error BADKEY mac \"\""},
		{name: "a BADKEY reply to an EDNS query has the OPT record before the TSIG record, reporting the identity when asked for",
			req:  signedBy("nobody.", withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})),
			want: "NOTAUTH rd\nar: OPT NSID \"dns-1.example\"\nar: TSIG nobody. error BADKEY mac \"\""},
		{name: "a BADKEY reply echoes the client subnet at scope 0, as Knot serving ECS does (RFC 7871 §7.2.1)",
			req:  signedBy("nobody.", withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2), &dns.EDNS0_NSID{Code: dns.EDNS0NSID})),
			want: "NOTAUTH rd\nar: OPT 10.1.2.0/24/0 NSID \"dns-1.example\"\nar: TSIG nobody. error BADKEY mac \"\""},
		{name: "a BADKEY reply larger than 512 bytes goes whole to a client that receives 1232",
			req:  signedBy(longKey, withEDNS(newQuery(longQuestion, dns.TypeA), 1232)),
			want: "NOTAUTH rd\nar: OPT\nar: TSIG " + longKey + " error BADKEY mac \"\""},
		{name: "a BADKEY reply larger than the client's buffer is cut to the question and OPT record with TC, the client asking again over TCP",
			req:  signedBy(longKey, withEDNS(newQuery(longQuestion, dns.TypeA), 512)),
			want: "NOTAUTH tc rd\nar: OPT"},
		{name: "NSID asked for is answered with the server identity (RFC 5001)",
			req:  withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}),
			want: "NOERROR aa rd\nan: mx.demo.test. 3600 IN A 192.0.2.25\nar: OPT NSID \"dns-1.example\""},
		{name: "NSID is not sent unasked", req: withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232),
			want: "NOERROR aa rd\nan: mx.demo.test. 3600 IN A 192.0.2.25\nar: OPT"},
		{name: "an EDNS version above 0 is BADVERS, with the identity when asked for (RFC 6891 §6.1.3, RFC 5001 §3)", req: version(1, withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})),
			want: "BADVERS rd\nar: OPT NSID \"dns-1.example\""},
		{name: "an EDNS version above 0 is BADVERS without the identity unasked", req: version(1, withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232)),
			want: "BADVERS rd\nar: OPT"},
		{name: "CH TXT id.server names the server", req: chaos("id.server."),
			want: "NOERROR aa rd\nan: id.server. 0 CH TXT \"dns-1.example\""},
		{name: "CH TXT hostname.bind names the server", req: chaos("HOSTNAME.bind."),
			want: "NOERROR aa rd\nan: hostname.bind. 0 CH TXT \"dns-1.example\""},
		{name: "CH TXT version.bind is refused", req: chaos("version.bind."),
			want: "REFUSED rd"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

func TestWildcardsAnswerAsRFC4592Says(t *testing.T) {
	tab := answersTable(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "mx IN A 192.0.2.25"
      - "*.wild IN A 192.0.2.80"
      - "*.wild IN TXT \"w\""
      - "x.wild IN MX 10 mx"
      - "a.b.wild IN A 192.0.2.81"
      - "*.alias IN CNAME mx"
      - "*.gone IN CNAME nothere"
      - "towild IN CNAME z.wild"
`)
	tests := []sectionCase{
		{name: "a name under a wildcard gets the records with its own name", req: newQuery("q.wild.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: q.wild.demo.test. 3600 IN A 192.0.2.80"},
		{name: "a wildcard matches several labels", req: newQuery("p.q.wild.demo.test.", dns.TypeTXT),
			want: "NOERROR aa rd\nan: p.q.wild.demo.test. 3600 IN TXT \"w\""},
		{name: "a wildcard without the type is NODATA", req: newQuery("q.wild.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "an existing name is not matched by the wildcard beside it", req: newQuery("x.wild.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "below an existing name without a wildcard is NXDOMAIN", req: newQuery("y.x.wild.demo.test.", dns.TypeA),
			want: "NXDOMAIN aa rd\nns: " + negSOA},
		{name: "an empty non-terminal is NODATA, not the wildcard", req: newQuery("b.wild.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "below an empty non-terminal the wildcard above does not apply", req: newQuery("c.b.wild.demo.test.", dns.TypeA),
			want: "NXDOMAIN aa rd\nns: " + negSOA},
		{name: "the wildcard name asked literally is answered", req: newQuery("*.wild.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: *.wild.demo.test. 3600 IN A 192.0.2.80"},
		{name: "a wildcard CNAME is synthesized and followed", req: newQuery("any.alias.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: any.alias.demo.test. 3600 IN CNAME mx.demo.test.\nan: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "a wildcard CNAME to no name is NXDOMAIN", req: newQuery("any.gone.demo.test.", dns.TypeA),
			want: "NXDOMAIN aa rd\nan: any.gone.demo.test. 3600 IN CNAME nothere.demo.test.\nns: " + negSOA},
		{name: "a CNAME into a wildcard is followed", req: newQuery("towild.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: towild.demo.test. 3600 IN CNAME z.wild.demo.test.\nan: z.wild.demo.test. 3600 IN A 192.0.2.80"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

// appsConfig has an app of every policy that answers clients differently, CNAMEs to each (one
// through another CNAME), and MX and SRV records whose targets are apps.
const appsConfig = `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "togeo IN CNAME geo"
      - "viageo IN CNAME togeo"
      - "toweighted IN CNAME weighted"
      - "torr IN CNAME rr"
      - "toshop IN CNAME shop"
      - "mail IN MX 10 shop"
      - "mail IN MX 20 geo"
      - "_http._tcp IN SRV 0 0 80 rr"
      - "_http._tcp IN SRV 1 0 80 shop"
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - {name: p1, endpoints: [{address: "127.0.0.11:80"}, {address: "[2001:db8::11]:80"}]}
  - name: geo
    fqdn: geo.demo.test
    ttl: 30
    policy: source
    sources: [{cidrs: ["10.1.0.0/16"], pools: [west]}]
    default_pools: [east]
    pools:
      - {name: west, endpoints: [{address: "10.0.0.1:80"}]}
      - {name: east, endpoints: [{address: "10.0.1.1:80"}]}
  - name: weighted
    fqdn: weighted.demo.test
    ttl: 30
    policy: weighted
    max_answers: 1
    pools:
      - {name: a, weight: 1, endpoints: [{address: "10.0.2.1:80"}, {address: "10.0.2.2:80"}, {address: "10.0.2.3:80"}]}
  - name: rr
    fqdn: rr.demo.test
    ttl: 30
    policy: round_robin
    max_answers: 1
    pools:
      - {name: a, endpoints: [{address: "10.0.3.1:80"}, {address: "10.0.3.2:80"}, {address: "10.0.3.3:80"}]}
`

func TestACNAMEToAnAppGivesTheAppsAnswerForThisClient(t *testing.T) {
	tab := answersTable(t, appsConfig)
	west, elsewhere := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.99")
	tests := []struct {
		name   string
		req    *dns.Msg
		remote netip.Addr
		want   string
	}{
		{name: "a client a source rule holds gets the rule's pool", req: newQuery("togeo.demo.test.", dns.TypeA), remote: west,
			want: "NOERROR aa rd\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nan: geo.demo.test. 30 IN A 10.0.0.1"},
		{name: "a client no rule holds gets the default pool", req: newQuery("togeo.demo.test.", dns.TypeA), remote: elsewhere,
			want: "NOERROR aa rd\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nan: geo.demo.test. 30 IN A 10.0.1.1"},
		{name: "an ECS subnet inside a rule gets the rule's pool, scoped to the subnet",
			req: withEDNS(newQuery("togeo.demo.test.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2)), remote: elsewhere,
			want: "NOERROR aa rd\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nan: geo.demo.test. 30 IN A 10.0.0.1\nar: OPT 10.1.2.0/24/24"},
		{name: "an ECS subnet wider than a rule gets the rule's length as scope (RFC 7871 §7.2.1)",
			req: withEDNS(newQuery("togeo.demo.test.", dns.TypeA), 1232, ecs(1, 8, 10)), remote: west,
			want: "NOERROR aa rd\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 10.0.0.0/8/16"},
		{name: "a chain of two CNAMEs ends at the same answer",
			req: withEDNS(newQuery("viageo.demo.test.", dns.TypeA), 1232, ecs(1, 24, 10, 1, 2)), remote: elsewhere,
			want: "NOERROR aa rd\nan: viageo.demo.test. 3600 IN CNAME togeo.demo.test.\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nan: geo.demo.test. 30 IN A 10.0.0.1\nar: OPT 10.1.2.0/24/24"},
		{name: "an app without an address of the type is NODATA after the CNAME", req: newQuery("togeo.demo.test.", dns.TypeAAAA), remote: west,
			want: "NOERROR aa rd\nan: togeo.demo.test. 3600 IN CNAME geo.demo.test.\nns: " + negSOA},
		{name: "max_answers holds through the CNAME", req: newQuery("toweighted.demo.test.", dns.TypeA), remote: west,
			want: "NOERROR aa rd\nan: toweighted.demo.test. 3600 IN CNAME weighted.demo.test.\nan: weighted.demo.test. 30 IN A 10.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := respondTo(t, tab, tt.req, tt.remote)
			if got := sections(r); got != tt.want {
				t.Errorf("query %s\nwant:\n%s\ngot:\n%s", tt.req.Question[0].String(), tt.want, got)
			}
		})
	}
}

// TestACNAMEToAnAppRotatesAndDrawsAsAQueryForTheApp asks one worker for an alias and another,
// of the same seed, for the app's own name, query after query: each alias reply must hold the
// records the app's name gave, with the same ECS scope, from the prepared replies and the
// reference path alike, so the alias's clients get the app's rotation, weights and rules.
func TestACNAMEToAnAppRotatesAndDrawsAsAQueryForTheApp(t *testing.T) {
	tab := answersTable(t, appsConfig)
	type path func(w *worker, p []byte, remote netip.Addr) []byte
	paths := map[string]path{
		"prepared":  func(w *worker, p []byte, remote netip.Addr) []byte { return w.respond(tab, p, remote, false) },
		"reference": func(w *worker, p []byte, remote netip.Addr) []byte { return w.reference(tab, p, remote, false) },
	}
	// addresses renders the address records and the ECS option of a reply.
	addresses := func(b []byte) string {
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		var out []string
		for _, rr := range append(r.Answer, r.Extra...) {
			switch rr.(type) {
			case *dns.A, *dns.AAAA, *dns.OPT:
				out = append(out, strings.ReplaceAll(sections(&dns.Msg{Answer: []dns.RR{rr}}), "NOERROR\nan: ", ""))
			}
		}
		return strings.Join(out, ", ")
	}
	pack := func(m *dns.Msg) []byte {
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, pair := range [][2]string{{"togeo", "geo"}, {"viageo", "geo"}, {"toweighted", "weighted"}, {"torr", "rr"}, {"toshop", "shop"}} {
		for _, remote := range []string{"10.1.2.3", "192.0.2.99", "2001:db8::1"} {
			for _, opts := range [][]dns.EDNS0{nil, {ecs(1, 24, 10, 1, 2)}, {ecs(1, 8, 10)}, {ecs(1, 16, 192, 168)}} {
				alias, target := newQuery(pair[0]+".demo.test.", dns.TypeA), newQuery(pair[1]+".demo.test.", dns.TypeA)
				if opts != nil {
					alias, target = withEDNS(alias, 1232, opts...), withEDNS(target, 1232, opts...)
				}
				for name, answer := range paths {
					viaAlias, direct := newWorker(7), newWorker(7)
					seen := map[string]bool{}
					for i := range 12 {
						got, want := addresses(answer(viaAlias, pack(alias), netip.MustParseAddr(remote))), addresses(answer(direct, pack(target), netip.MustParseAddr(remote)))
						if got != want {
							t.Errorf("%s path, %s from %s with %v, query %d: the alias gives %q, the app's name %q", name, pair[0], remote, opts, i, got, want)
						}
						seen[got] = true
					}
					if pair[1] == "rr" && len(seen) != 3 {
						t.Errorf("%s path, %s from %s: 12 queries gave %d answers, want the 3 rotations", name, pair[0], remote, len(seen))
					}
				}
			}
		}
	}
}

func TestAnAppTargetOfMXOrSRVAddsTheAddressesEveryClientGets(t *testing.T) {
	tab := answersTable(t, appsConfig)
	tests := []sectionCase{
		{name: "an MX target whose answer is the same for every client adds it; one by source adds nothing",
			req: newQuery("mail.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mail.demo.test. 3600 IN MX 10 shop.demo.test.\nan: mail.demo.test. 3600 IN MX 20 geo.demo.test.\n" +
				"ar: shop.demo.test. 5 IN A 127.0.0.11\nar: shop.demo.test. 5 IN AAAA 2001:db8::11"},
		{name: "an SRV target that rotates adds nothing",
			req: newQuery("_http._tcp.demo.test.", dns.TypeSRV),
			want: "NOERROR aa rd\nan: _http._tcp.demo.test. 3600 IN SRV 0 0 80 rr.demo.test.\nan: _http._tcp.demo.test. 3600 IN SRV 1 0 80 shop.demo.test.\n" +
				"ar: shop.demo.test. 5 IN A 127.0.0.11\nar: shop.demo.test. 5 IN AAAA 2001:db8::11"},
		{name: "the reply to an MX query with ECS keeps scope 0: it does not depend on the client",
			req: withEDNS(newQuery("mail.demo.test.", dns.TypeMX), 1232, ecs(1, 24, 10, 1, 2)),
			want: "NOERROR aa rd\nan: mail.demo.test. 3600 IN MX 10 shop.demo.test.\nan: mail.demo.test. 3600 IN MX 20 geo.demo.test.\n" +
				"ar: shop.demo.test. 5 IN A 127.0.0.11\nar: shop.demo.test. 5 IN AAAA 2001:db8::11\nar: OPT 10.1.2.0/24/0"},
	}
	checkSections(t, tab, netip.MustParseAddr("10.1.2.3"), tests)
}

// TestAdditionalAddressesComeFromWildcardsAndGlueAsKnotsDo: the addresses of an NS, MX or SRV
// target are additional data wherever the zone holds them (RFC 1034 §4.3.2 step 6), as Knot
// adds them: synthesized from the wildcard that answers the target (RFC 4592), and the glue of a
// target below a delegation. Glue of the zone's own name servers comes first, as Knot's does: a
// resolver can ask for the other addresses, not for those.
func TestAdditionalAddressesComeFromWildcardsAndGlueAsKnotsDo(t *testing.T) {
	tab := answersTable(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "@ IN NS ns.sub"
      - "sub IN NS ns.sub"
      - "ns.sub IN A 192.0.2.7"
      - "mx IN A 192.0.2.25"
      - "*.wild IN A 192.0.2.80"
      - "*.wild IN AAAA 2001:db8::80"
      - "mail IN MX 10 host.wild"
      - "srv IN SRV 0 0 80 host.wild"
      - "*.wmx IN MX 10 mx"
      - "mxsub IN MX 10 ns.sub"
      - "mxother IN MX 10 ns.sub.other.test."
      - "srvother IN SRV 0 0 25 ns.sub.other.test."
      - "mxotherwild IN MX 10 host.wild.other.test."
      - "tomxsub IN CNAME mxsub.other.test."
  - name: other.test
    nameservers: [{name: ns1.other.test, address: 127.0.0.54}]
    records:
      - "sub IN NS ns.sub"
      - "ns.sub IN A 192.0.2.77"
      - "mxsub IN MX 10 ns.sub"
      - "*.wild IN A 192.0.2.81"
      - "*.wild IN TXT \"not an address\""
`)
	tests := []sectionCase{
		{name: "an MX target a wildcard answers gets the addresses it synthesizes", req: newQuery("mail.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mail.demo.test. 3600 IN MX 10 host.wild.demo.test.\nar: host.wild.demo.test. 3600 IN A 192.0.2.80\nar: host.wild.demo.test. 3600 IN AAAA 2001:db8::80"},
		{name: "so does an SRV target", req: newQuery("srv.demo.test.", dns.TypeSRV),
			want: "NOERROR aa rd\nan: srv.demo.test. 3600 IN SRV 0 0 80 host.wild.demo.test.\nar: host.wild.demo.test. 3600 IN A 192.0.2.80\nar: host.wild.demo.test. 3600 IN AAAA 2001:db8::80"},
		{name: "an MX record a wildcard synthesizes gets its target's addresses", req: newQuery("a.wmx.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: a.wmx.demo.test. 3600 IN MX 10 mx.demo.test.\nar: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "the apex's name server below a delegation gets its glue, before the other addresses", req: newQuery("demo.test.", dns.TypeNS),
			want: "NOERROR aa rd\nan: demo.test. 3600 IN NS ns1.demo.test.\nan: demo.test. 3600 IN NS ns.sub.demo.test.\nar: ns.sub.demo.test. 3600 IN A 192.0.2.7\nar: ns1.demo.test. 3600 IN A 127.0.0.53"},
		{name: "an MX target below a delegation gets its glue", req: newQuery("mxsub.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mxsub.demo.test. 3600 IN MX 10 ns.sub.demo.test.\nar: ns.sub.demo.test. 3600 IN A 192.0.2.7"},
		{name: "an MX target below another zone's delegation gets none of that zone's glue", req: newQuery("mxother.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mxother.demo.test. 3600 IN MX 10 ns.sub.other.test."},
		{name: "nor does an SRV target", req: newQuery("srvother.demo.test.", dns.TypeSRV),
			want: "NOERROR aa rd\nan: srvother.demo.test. 3600 IN SRV 0 0 25 ns.sub.other.test."},
		{name: "a target another served zone answers by a wildcard gets that zone's addresses, and only addresses", req: newQuery("mxotherwild.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mxotherwild.demo.test. 3600 IN MX 10 host.wild.other.test.\nar: host.wild.other.test. 3600 IN A 192.0.2.81"},
		{name: "an MX record of another zone a CNAME leads to gets the glue of that zone's own delegation", req: newQuery("tomxsub.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: tomxsub.demo.test. 3600 IN CNAME mxsub.other.test.\nan: mxsub.other.test. 3600 IN MX 10 ns.sub.other.test.\nar: ns.sub.other.test. 3600 IN A 192.0.2.77"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

// TestAnSVCBOrHTTPSAnswerCarriesTheRecordsOfItsTargets: RFC 9460 §4.1 has an authoritative
// server add to an SVCB or HTTPS answer the A, AAAA and SVCB (HTTPS) records of every
// TargetName in its zone, as Knot does: a wildcard's synthesized for the target's name, in the
// order of the answer's records (RFC 4034 §6.3), each target once. The target "." (the owner
// itself, in ServiceMode) adds nothing, as Knot adds nothing; nor do another type's records.
// Left out when the reply does not fit, without TC.
func TestAnSVCBOrHTTPSAnswerCarriesTheRecordsOfItsTargets(t *testing.T) {
	// Two ALPN ids of 250 bytes: bigpool's HTTPS record does not fit in 512 bytes.
	alpn := strings.Repeat("x", 250) + "," + strings.Repeat("y", 250)
	tab := answersTable(t, fmt.Sprintf(`
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "@ IN HTTPS 0 svc"
      - "svc IN HTTPS 1 Pool alpn=h2"
      - "svc IN HTTPS 2 . alpn=h3"
      - "svc IN HTTPS 3 pool port=8443"
      - "pool IN A 192.0.2.1"
      - "pool IN AAAA 2001:db8::1"
      - "pool IN HTTPS 1 . alpn=h2"
      - "pool IN SVCB 1 . alpn=h2"
      - "_dns IN SVCB 1 host.wild alpn=dot"
      - "*.wild IN A 192.0.2.80"
      - "*.wild IN SVCB 1 . alpn=dot"
      - "*.wild IN TXT \"not additional data\""
      - "big IN HTTPS 1 bigpool alpn=h2"
      - "bigpool IN A 192.0.2.2"
      - "bigpool IN AAAA 2001:db8::2"
      - "bigpool IN HTTPS 1 . alpn=h2,%s"
`, alpn))
	tests := []sectionCase{
		{name: "an AliasMode target gets its addresses and records of the type", req: newQuery("demo.test.", dns.TypeHTTPS),
			want: "NOERROR aa rd\nan: demo.test. 3600 IN HTTPS 0 svc.demo.test.\nar: svc.demo.test. 3600 IN HTTPS 1 Pool.demo.test. alpn=\"h2\"\n" +
				"ar: svc.demo.test. 3600 IN HTTPS 2 . alpn=\"h3\"\nar: svc.demo.test. 3600 IN HTTPS 3 pool.demo.test. port=\"8443\""},
		{name: "a ServiceMode target, however spelt, gets them once; the target . nothing", req: newQuery("svc.demo.test.", dns.TypeHTTPS),
			want: "NOERROR aa rd\nan: svc.demo.test. 3600 IN HTTPS 1 Pool.demo.test. alpn=\"h2\"\nan: svc.demo.test. 3600 IN HTTPS 2 . alpn=\"h3\"\n" +
				"an: svc.demo.test. 3600 IN HTTPS 3 pool.demo.test. port=\"8443\"\n" +
				"ar: pool.demo.test. 3600 IN A 192.0.2.1\nar: pool.demo.test. 3600 IN AAAA 2001:db8::1\nar: pool.demo.test. 3600 IN HTTPS 1 . alpn=\"h2\""},
		{name: "an SVCB target a wildcard answers gets what it synthesizes, of the type", req: newQuery("_dns.demo.test.", dns.TypeSVCB),
			want: "NOERROR aa rd\nan: _dns.demo.test. 3600 IN SVCB 1 host.wild.demo.test. alpn=\"dot\"\n" +
				"ar: host.wild.demo.test. 3600 IN A 192.0.2.80\nar: host.wild.demo.test. 3600 IN SVCB 1 . alpn=\"dot\""},
		{name: "they are left out, without TC, where they do not fit", req: newQuery("big.demo.test.", dns.TypeHTTPS),
			want: "NOERROR aa rd\nan: big.demo.test. 3600 IN HTTPS 1 bigpool.demo.test. alpn=\"h2\"\n" +
				"ar: bigpool.demo.test. 3600 IN A 192.0.2.2\nar: bigpool.demo.test. 3600 IN AAAA 2001:db8::2"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

// TestAReferralCarriesTheAddressesOfItsNameServersTheZoneHoldsAsKnotsDoes: a referral carries
// the glue of the name servers at or below its cut, then, as Knot does, the addresses the zone
// holds for its other name servers (RFC 9471 §2.2, §3.2: sibling glue, here also authoritative
// addresses and those a wildcard synthesizes), each group in the order RFC 4034 §6.3 gives the
// NS records, as Knot keeps them. Only glue below the cut sets TC when it does not fit (RFC 9471
// §3.1); the others are left out without it. Another served zone's addresses, glue or not, stay
// that zone's to give: a resolver takes nothing from a referral beyond the zone it asked.
func TestAReferralCarriesTheAddressesOfItsNameServersTheZoneHoldsAsKnotsDoes(t *testing.T) {
	conf := `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "sub IN NS host.wild"
      - "sub IN NS ns"
      - "sub IN NS ns.sub2"
      - "sub IN NS ns.sub"
      - "sub IN NS alias"
      - "sub IN NS ns.other.test."
      - "sub IN NS ns.sub.other.test."
      - "sub IN NS ns.example."
      - "ns IN A 192.0.2.1"
      - "ns IN AAAA 2001:db8::1"
      - "ns.sub IN A 192.0.2.7"
      - "sub2 IN NS ns.sub2"
      - "ns.sub2 IN A 192.0.2.8"
      - "*.wild IN A 192.0.2.80"
      - "*.wild IN TXT \"not an address\""
      - "alias IN CNAME ns"
      - "deleg IN CNAME host.sub"
      - "wide IN NS ns.wide"
      - "ns.wide IN A 192.0.2.9"
%s
  - name: other.test
    nameservers: [{name: ns1.other.test, address: 127.0.0.54}]
    records:
      - "ns IN A 192.0.2.60"
      - "sub IN NS ns.sub"
      - "ns.sub IN A 192.0.2.77"
      - "toother IN CNAME host.sub.demo.test."
`
	var wide strings.Builder
	for i := range 12 {
		fmt.Fprintf(&wide, "      - \"wide IN NS relay%02d\"\n      - \"relay%02d IN A 192.0.2.%d\"\n      - \"relay%02d IN AAAA 2001:db8::%d\"\n", i, i, 100+i, i, 100+i)
	}
	tab := answersTable(t, fmt.Sprintf(conf, strings.TrimRight(wide.String(), "\n")))
	ns := "ns: sub.demo.test. 3600 IN NS host.wild.demo.test.\nns: sub.demo.test. 3600 IN NS ns.demo.test.\nns: sub.demo.test. 3600 IN NS ns.sub2.demo.test.\n" +
		"ns: sub.demo.test. 3600 IN NS ns.sub.demo.test.\nns: sub.demo.test. 3600 IN NS alias.demo.test.\nns: sub.demo.test. 3600 IN NS ns.other.test.\n" +
		"ns: sub.demo.test. 3600 IN NS ns.sub.other.test.\nns: sub.demo.test. 3600 IN NS ns.example."
	glue := "ar: ns.sub.demo.test. 3600 IN A 192.0.2.7\n" + // below the cut: first
		"ar: ns.demo.test. 3600 IN A 192.0.2.1\nar: ns.demo.test. 3600 IN AAAA 2001:db8::1\n" + // the zone's own data
		"ar: ns.sub2.demo.test. 3600 IN A 192.0.2.8\n" + // sibling glue, below another delegation
		"ar: host.wild.demo.test. 3600 IN A 192.0.2.80" // a wildcard's, its addresses only
	var relays strings.Builder
	for i := range 12 {
		fmt.Fprintf(&relays, "\nns: wide.demo.test. 3600 IN NS relay%02d.demo.test.", i)
	}
	tests := []sectionCase{
		{name: "a referral carries the glue below its cut, then the addresses of its other name servers the zone holds",
			req: newQuery("host.sub.demo.test.", dns.TypeA), want: "NOERROR rd\n" + ns + "\n" + glue},
		{name: "so does the referral a question for the cut's NS records gets",
			req: newQuery("sub.demo.test.", dns.TypeNS), want: "NOERROR rd\n" + ns + "\n" + glue},
		{name: "so does a referral a CNAME chain ends in",
			req:  newQuery("deleg.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: deleg.demo.test. 3600 IN CNAME host.sub.demo.test.\n" + ns + "\n" + glue},
		{name: "and one it ends in after leaving the zone of the question",
			req:  newQuery("toother.other.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: toother.other.test. 3600 IN CNAME host.sub.demo.test.\n" + ns + "\n" + glue},
		{name: "a referral too large for the client leaves out addresses outside its cut without TC, keeping its glue",
			req: newQuery("x.wide.demo.test.", dns.TypeA),
			want: "NOERROR rd\nns: wide.demo.test. 3600 IN NS ns.wide.demo.test." + relays.String() + "\nar: ns.wide.demo.test. 3600 IN A 192.0.2.9" +
				"\nar: relay00.demo.test. 3600 IN A 192.0.2.100\nar: relay00.demo.test. 3600 IN AAAA 2001:db8::100" +
				"\nar: relay01.demo.test. 3600 IN A 192.0.2.101\nar: relay01.demo.test. 3600 IN AAAA 2001:db8::101" +
				"\nar: relay02.demo.test. 3600 IN A 192.0.2.102\nar: relay02.demo.test. 3600 IN AAAA 2001:db8::102" +
				"\nar: relay03.demo.test. 3600 IN A 192.0.2.103\nar: relay03.demo.test. 3600 IN AAAA 2001:db8::103"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

// TestAReferralCarriesItsSiblingGlueForANameServerOfAnotherServedZoneAsKnotsDoes: the sibling
// glue a zone holds below another of its delegations is its own data, and a referral carries it
// whether or not Detour also serves the zone delegated there; Knot serving both zones gives the
// parent's glue (192.0.2.8), not the child's address (192.0.2.9). Only the referral leaves out
// what another served zone holds; another zone's referral answers for that zone alone.
func TestAReferralCarriesItsSiblingGlueForANameServerOfAnotherServedZoneAsKnotsDoes(t *testing.T) {
	tab := answersTable(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "foo IN NS ns.kid"
      - "foo IN NS ns.foo"
      - "ns.foo IN A 192.0.2.5"
      - "kid IN NS ns.kid"
      - "ns.kid IN A 192.0.2.8"
  - name: kid.demo.test
    nameservers: [{name: ns.kid.demo.test, address: 192.0.2.9}]
`)
	tests := []sectionCase{
		{name: "the referral carries the glue below its cut, then the sibling glue its zone holds",
			req: newQuery("x.foo.demo.test.", dns.TypeA),
			want: "NOERROR rd\nns: foo.demo.test. 3600 IN NS ns.kid.demo.test.\nns: foo.demo.test. 3600 IN NS ns.foo.demo.test.\n" +
				"ar: ns.foo.demo.test. 3600 IN A 192.0.2.5\nar: ns.kid.demo.test. 3600 IN A 192.0.2.8"},
		{name: "the child zone answers for its own name server",
			req:  newQuery("ns.kid.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: ns.kid.demo.test. 3600 IN A 192.0.2.9"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

func TestALabelHoldingADotIsOneLabel(t *testing.T) {
	tab := answersTable(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "* IN A 192.0.2.1"
      - "a\\.b IN TXT \"one label\""
      - "sub IN NS ns.other.example."
      - "evil\\.sub IN TXT \"beside sub\""
`)
	tests := []sectionCase{
		{name: "the label is answered", req: newQuery(`a\.b.demo.test.`, dns.TypeTXT),
			want: "NOERROR aa rd\nan: a\\.b.demo.test. 3600 IN TXT \"one label\""},
		{name: "the label is answered whatever the case and escape of its spelling", req: newQuery(`A\046B.demo.test.`, dns.TypeTXT),
			want: "NOERROR aa rd\nan: A\\.B.demo.test. 3600 IN TXT \"one label\""},
		{name: "what follows its dot is no name: the wildcard answers it (RFC 4592)", req: newQuery("b.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: b.demo.test. 3600 IN A 192.0.2.1"},
		{name: "nor is what follows its dot an empty non-terminal hiding the wildcard", req: newQuery("a.b.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: a.b.demo.test. 3600 IN A 192.0.2.1"},
		{name: "a label ending in a delegation's name is not below it", req: newQuery(`evil\.sub.demo.test.`, dns.TypeTXT),
			want: "NOERROR aa rd\nan: evil\\.sub.demo.test. 3600 IN TXT \"beside sub\""},
		{name: "the delegation still refers what is below it", req: newQuery("x.sub.demo.test.", dns.TypeA),
			want: "NOERROR rd\nns: sub.demo.test. 3600 IN NS ns.other.example."},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

func TestANewConfigurationsRecordsReplaceThePreparedOnes(t *testing.T) {
	before := answersTable(t, answersConfig)
	static, err := zone.Compile(eventstest.Config(t, strings.Replace(answersConfig, "mx IN A 192.0.2.25", "mx IN A 192.0.2.26", 1)))
	if err != nil {
		t.Fatal(err)
	}
	after := buildTable(static.Project(state.NewView(), map[string]uint32{"demo.test.": 2}), before)
	r, _ := respondTo(t, after, newQuery("mx.demo.test.", dns.TypeA), netip.MustParseAddr("10.1.2.3"))
	if got, want := sections(r), "NOERROR aa rd\nan: mx.demo.test. 3600 IN A 192.0.2.26"; got != want {
		t.Errorf("after the new configuration mx answers\n%s\nwant\n%s", got, want)
	}
}

func TestMalformedQueriesAreFORMERR(t *testing.T) {
	tab := answersTable(t, answersConfig)
	pack := func(m *dns.Msg) []byte {
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tsigThenOPT := newQuery("mx.demo.test.", dns.TypeA)
	tsigThenOPT.SetTsig("nobody.", dns.HmacSHA256, 300, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	tsigThenOPT.Extra = append(tsigThenOPT.Extra, withEDNS(new(dns.Msg), 1232).Extra[0])
	lyingCount := pack(newQuery("mx.demo.test.", dns.TypeA))
	lyingCount[11] = 1 // ARCOUNT 1, and no record follows
	ixfr := func(ns ...dns.RR) []byte {
		m := newQuery("demo.test.", dns.TypeIXFR)
		m.Ns = ns
		return pack(m)
	}
	soa := func(name string) dns.RR {
		rr, err := dns.NewRR(name + " 0 IN SOA ns1.demo.test. hostmaster.demo.test. 1 3600 600 604800 5")
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	tests := []struct {
		name string
		p    []byte
		want string
	}{
		{name: "bytes after the last record", p: append(pack(newQuery("mx.demo.test.", dns.TypeA)), 1, 2, 3),
			want: "FORMERR rd"},
		{name: "bytes after the OPT record", p: append(pack(withEDNS(newQuery("mx.demo.test.", dns.TypeA), 1232)), 0),
			want: "FORMERR rd\nar: OPT"},
		{name: "a section count larger than the records sent", p: lyingCount,
			want: "FORMERR rd"},
		{name: "a TSIG record before the last of the additional section (RFC 8945 §5.2)", p: pack(tsigThenOPT),
			want: "FORMERR rd\nar: OPT"},
		{name: "an IXFR without the client's SOA (RFC 1995 §3)", p: ixfr(),
			want: "FORMERR rd"},
		{name: "an IXFR whose SOA is another zone's", p: ixfr(soa("example.com.")),
			want: "FORMERR rd"},
		{name: "an IXFR with another record beside its SOA", p: ixfr(soa("demo.test."), soa("demo.test.")),
			want: "FORMERR rd"},
	}
	remote := netip.MustParseAddr("127.0.0.1")
	for _, tt := range tests {
		for _, tcp := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s (tcp %v)", tt.name, tcp), func(t *testing.T) {
				r := new(dns.Msg)
				if err := r.Unpack(newWorker(1).respond(tab, tt.p, remote, tcp)); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
				if got := sections(r); got != tt.want {
					t.Errorf("want:\n%s\ngot:\n%s", tt.want, got)
				}
			})
		}
	}
}

func TestNamesInRecordDataMatchWhateverTheirCase(t *testing.T) {
	tab := answersTable(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records:
      - "mx IN A 192.0.2.25"
      - "upper IN CNAME MX"
      - "upperabs IN CNAME mx.DEMO.test."
      - "escaped IN CNAME \\077\\088"
      - "mail IN MX 10 Mx"
      - "srv IN SRV 0 0 80 MX.Demo.Test."
      - "sub IN NS NS.SUB"
      - "ns.sub IN A 192.0.2.7"
`)
	tests := []sectionCase{
		{name: "a CNAME to a name spelt in upper case is followed (RFC 4343)", req: newQuery("upper.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: upper.demo.test. 3600 IN CNAME mx.demo.test.\nan: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "a CNAME to the zone spelt in another case stays in the zone", req: newQuery("upperabs.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: upperabs.demo.test. 3600 IN CNAME mx.demo.test.\nan: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "a CNAME to a name spelt with escapes is followed", req: newQuery("escaped.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: escaped.demo.test. 3600 IN CNAME mx.demo.test.\nan: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "an MX target in upper case gets its address as additional data", req: newQuery("mail.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd\nan: mail.demo.test. 3600 IN MX 10 mx.demo.test.\nar: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "an SRV target in upper case gets its address as additional data", req: newQuery("srv.demo.test.", dns.TypeSRV),
			want: "NOERROR aa rd\nan: srv.demo.test. 3600 IN SRV 0 0 80 mx.demo.test.\nar: mx.demo.test. 3600 IN A 192.0.2.25"},
		{name: "a referral to a name server in upper case carries its glue (RFC 9471 §3)", req: newQuery("x.sub.demo.test.", dns.TypeA),
			want: "NOERROR rd\nns: sub.demo.test. 3600 IN NS ns.sub.demo.test.\nar: ns.sub.demo.test. 3600 IN A 192.0.2.7"},
	}
	checkSections(t, tab, netip.MustParseAddr("192.0.2.99"), tests)
}

// crowdedConfig holds replies larger than 512 bytes: an MX answer whose targets' addresses do
// not all fit beside it, a referral whose glue does not fit, and a TXT answer that does not fit
// itself.
func crowdedConfig() string {
	var b strings.Builder
	b.WriteString("zones:\n  - name: demo.test\n    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]\n    records:\n")
	for i := range 12 {
		fmt.Fprintf(&b, "      - \"mail IN MX %d m%02d\"\n", i, i)
		fmt.Fprintf(&b, "      - \"m%02d IN A 192.0.2.%d\"\n      - \"m%02d IN AAAA 2001:db8::%d\"\n", i, i+1, i, i+1)
	}
	for i := range 10 {
		fmt.Fprintf(&b, "      - \"deleg IN NS ns%02d.deleg\"\n      - \"ns%02d.deleg IN A 192.0.2.%d\"\n", i, i, 100+i)
		fmt.Fprintf(&b, "      - \"ns%02d.deleg IN AAAA 2001:db8::%d\"\n", i, 100+i)
	}
	for i := range 12 {
		fmt.Fprintf(&b, "      - \"big IN TXT \\\"%02d %s\\\"\"\n", i, strings.Repeat("x", 60))
	}
	return b.String()
}

// TestRepliesLargerThanTheBufferLeaveOutAdditionalAddressesWithoutTC asks for replies that do
// not fit the client's buffer: addresses beside an answer are extra information, left out
// RRset by RRset without TC (RFC 2181 §9); a referral that leaves out glue of the delegated
// zone's name servers has TC set (RFC 9471 §3); an answer that does not fit is truncated.
func TestRepliesLargerThanTheBufferLeaveOutAdditionalAddressesWithoutTC(t *testing.T) {
	tab := answersTable(t, crowdedConfig())
	tests := []struct {
		name string
		req  *dns.Msg
		want string
	}{
		{name: "an MX answer without EDNS keeps its records and the addresses that fit, without TC",
			req:  newQuery("mail.demo.test.", dns.TypeMX),
			want: "NOERROR aa rd; 12 answers, 0 authority; additional m00/A m00/AAAA m01/A m01/AAAA m02/A m02/AAAA m03/A m03/AAAA m04/A m04/AAAA m05/A; 508 bytes"},
		{name: "the same in 1232 bytes keeps every address",
			req:  withEDNS(newQuery("mail.demo.test.", dns.TypeMX), 1232),
			want: "NOERROR aa rd; 12 answers, 0 authority; additional m00/A m00/AAAA m01/A m01/AAAA m02/A m02/AAAA m03/A m03/AAAA m04/A m04/AAAA m05/A m05/AAAA m06/A m06/AAAA m07/A m07/AAAA m08/A m08/AAAA m09/A m09/AAAA m10/A m10/AAAA m11/A m11/AAAA; 811 bytes"},
		{name: "an address RRset that does not fit is left out and a smaller one after it stays, as Knot does",
			req:  withEDNS(newQuery("mail.demo.test.", dns.TypeMX), 535),
			want: "NOERROR aa rd; 12 answers, 0 authority; additional m00/A m00/AAAA m01/A m01/AAAA m02/A m02/AAAA m03/A m03/AAAA m04/A m04/AAAA m05/A m06/A; 535 bytes"},
		{name: "a referral whose glue does not fit keeps what fits and has TC",
			req:  newQuery("x.deleg.demo.test.", dns.TypeA),
			want: "NOERROR tc rd; 0 answers, 10 authority; additional ns00.deleg/A ns00.deleg/AAAA ns01.deleg/A ns01.deleg/AAAA ns02.deleg/A ns02.deleg/AAAA ns03.deleg/A ns03.deleg/AAAA ns04.deleg/A ns04.deleg/AAAA ns05.deleg/A ns05.deleg/AAAA ns06.deleg/A; 505 bytes"},
		{name: "a referral whose glue fits has no TC",
			req:  withEDNS(newQuery("x.deleg.demo.test.", dns.TypeA), 1232),
			want: "NOERROR rd; 0 answers, 10 authority; additional ns00.deleg/A ns00.deleg/AAAA ns01.deleg/A ns01.deleg/AAAA ns02.deleg/A ns02.deleg/AAAA ns03.deleg/A ns03.deleg/AAAA ns04.deleg/A ns04.deleg/AAAA ns05.deleg/A ns05.deleg/AAAA ns06.deleg/A ns06.deleg/AAAA ns07.deleg/A ns07.deleg/AAAA ns08.deleg/A ns08.deleg/AAAA ns09.deleg/A ns09.deleg/AAAA; 676 bytes"},
		{name: "an answer that does not fit is truncated to the question",
			req:  newQuery("big.demo.test.", dns.TypeTXT),
			want: "NOERROR aa tc rd; 0 answers, 0 authority; additional; 31 bytes"},
	}
	remote := netip.MustParseAddr("192.0.2.99")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, b := respondTo(t, tab, tt.req, remote)
			got := fmt.Sprintf("%s; %d answers, %d authority; additional", strings.SplitN(sections(r), "\n", 2)[0], len(r.Answer), len(r.Ns))
			for _, rr := range r.Extra {
				if rr.Header().Rrtype != dns.TypeOPT {
					got += " " + strings.TrimSuffix(rr.Header().Name, ".demo.test.") + "/" + dns.TypeToString[rr.Header().Rrtype]
				}
			}
			got += fmt.Sprintf("; %d bytes", len(b))
			if got != tt.want {
				t.Errorf("query %s\nwant: %s\ngot:  %s", tt.req.Question[0].String(), tt.want, got)
			}
		})
	}
}

// TestDSAtAChildZonesApexIsTheParentZonesAnswer serves a zone and the zone it delegates: the
// DS RRset lives on the parent side of the cut (RFC 4035 §3.1.4.1), so a DS question for the
// child's apex is answered from the parent, as Knot does, whichever order the zones are listed
// in and whichever path answers; every other question for the name is the child's.
func TestDSAtAChildZonesApexIsTheParentZonesAnswer(t *testing.T) {
	parent := `
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    records: ["sub IN NS ns1.sub", "ns1.sub IN A 192.0.2.7", "tosub IN CNAME sub",
      "other IN NS ns.elsewhere.example.", "other IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE3D6C3E0A6D3A6B2E2C1C0C1D",
      "toother IN CNAME other"]`
	child := `
  - name: sub.demo.test
    nameservers: [{name: ns1.sub.demo.test, address: 192.0.2.7}]
    records: ["x IN A 192.0.2.8"]`
	childSOA := "sub.demo.test. 5 IN SOA ns1.sub.demo.test. hostmaster.sub.demo.test. 0 3600 600 604800 5"
	tests := []struct {
		name string
		req  *dns.Msg
		want string
	}{
		{name: "DS at the child's apex is the parent's NODATA", req: newQuery("sub.demo.test.", dns.TypeDS),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "DS at the child's apex with EDNS is the parent's NODATA", req: withEDNS(newQuery("SUB.demo.test.", dns.TypeDS), 1232),
			want: "NOERROR aa rd\nns: " + negSOA + "\nar: OPT"},
		{name: "other types at the child's apex are the child's", req: newQuery("sub.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nns: " + childSOA},
		{name: "DS below the child's apex is the child's", req: newQuery("x.sub.demo.test.", dns.TypeDS),
			want: "NOERROR aa rd\nns: " + childSOA},
		{name: "DS at the parent's apex, whose parent is not served, is the parent's own", req: newQuery("demo.test.", dns.TypeDS),
			want: "NOERROR aa rd\nns: " + negSOA},
		{name: "DS through a CNAME to the child's apex is the parent's NODATA", req: newQuery("tosub.demo.test.", dns.TypeDS),
			want: "NOERROR aa rd\nan: tosub.demo.test. 3600 IN CNAME sub.demo.test.\nns: " + negSOA},
		{name: "DS through a CNAME to a delegation is the parent's DS", req: newQuery("toother.demo.test.", dns.TypeDS),
			want: "NOERROR aa rd\nan: toother.demo.test. 3600 IN CNAME other.demo.test.\nan: other.demo.test. 3600 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE3D6C3E0A6D3A6B2E2C1C0C1D"},
		{name: "A through a CNAME to a delegation is a referral", req: newQuery("toother.demo.test.", dns.TypeA),
			want: "NOERROR aa rd\nan: toother.demo.test. 3600 IN CNAME other.demo.test.\nns: other.demo.test. 3600 IN NS ns.elsewhere.example."},
	}
	remote := netip.MustParseAddr("192.0.2.99")
	for order, zones := range []string{parent + child, child + parent} {
		tab := answersTable(t, "zones:"+zones)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("zones in order %d: %s", order+1, tt.name), func(t *testing.T) {
				r, b := respondTo(t, tab, tt.req, remote)
				if got := sections(r); got != tt.want {
					t.Errorf("query %s\nwant:\n%s\ngot:\n%s", tt.req.Question[0].String(), tt.want, got)
				}
				p, err := tt.req.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if want := newWorker(1).reference(tab, p, remote, false); !bytes.Equal(b, want) {
					t.Errorf("the reply differs from the reference path's")
				}
			})
		}
	}
}

func TestIPv4MappedPrefixesInTheConfigurationHoldTheIPv4ClientsTheyMap(t *testing.T) {
	conf := strings.NewReplacer(`"10.1.0.0/16"`, `"::ffff:10.1.0.0/112"`, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"::ffff:127.0.0.0/104\"]\n").Replace(answersConfig)
	tab := answersTable(t, conf)
	west := netip.MustParseAddr("10.1.2.3")
	r, _ := respondTo(t, tab, newQuery("geo.demo.test.", dns.TypeA), west)
	if want, got := "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.0.1", sections(r); got != want {
		t.Errorf("a client of sources ::ffff:10.1.0.0/112 (10.1.0.0/16)\nwant:\n%s\ngot:\n%s", want, got)
	}
	r, _ = respondTo(t, tab, withEDNS(newQuery("geo.demo.test.", dns.TypeA), 1232, ecs(1, 8, 10)), west)
	if want, got := "NOERROR aa rd\nan: geo.demo.test. 30 IN A 10.0.1.1\nar: OPT 10.0.0.0/8/16", sections(r); got != want {
		t.Errorf("a subnet wider than the rule is scoped to it\nwant:\n%s\ngot:\n%s", want, got)
	}
	for _, tt := range []struct {
		remote string
		want   bool
	}{{"127.0.0.1", true}, {"::ffff:127.0.0.2", true}, {"10.0.0.1", false}} {
		msgs, _ := transfer(tab, nil, newQuery("demo.test.", dns.TypeAXFR), netip.MustParseAddr(tt.remote), nil, nil)
		if got := msgs != nil; got != tt.want {
			t.Errorf("AXFR from %s with transfer_to ::ffff:127.0.0.0/104 (127.0.0.0/8): want transferred %v, got %v", tt.remote, tt.want, got)
		}
	}
}

package push

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

func a(name, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.ParseIP(ip)}
}

func cname(name, target string) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 30}, Target: target}
}

// lines renders an update section as "name class type data" lines.
func lines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func TestUpdateReplacesOnlyTheRRsetsThatDiffer(t *testing.T) {
	shopA := zone.Key{Name: "shop.demo.test.", Type: dns.TypeA}
	webA := zone.Key{Name: "web.demo.test.", Type: dns.TypeA}
	webCNAME := zone.Key{Name: "web.demo.test.", Type: dns.TypeCNAME}
	tests := []struct {
		name         string
		before, want map[zone.Key][]dns.RR
		update       []string
		n            int
	}{
		{name: "an unchanged zone sends nothing",
			before: map[zone.Key][]dns.RR{shopA: {a("shop.demo.test.", "10.0.0.1")}},
			want:   map[zone.Key][]dns.RR{shopA: {a("shop.demo.test.", "10.0.0.1")}}},
		{name: "a changed RRset is removed and added whole",
			before: map[zone.Key][]dns.RR{shopA: {a("shop.demo.test.", "10.0.0.1")}, webA: {a("web.demo.test.", "10.0.0.5")}},
			want:   map[zone.Key][]dns.RR{shopA: {a("shop.demo.test.", "10.0.0.2")}, webA: {a("web.demo.test.", "10.0.0.5")}},
			update: []string{"shop.demo.test. 0 CLASS255 A", "shop.demo.test. 30 IN A 10.0.0.2"}, n: 1},
		{name: "an address answer turned CNAME removes the addresses before adding the alias",
			before: map[zone.Key][]dns.RR{webA: {a("web.demo.test.", "10.0.0.5")}},
			want:   map[zone.Key][]dns.RR{webCNAME: {cname("web.demo.test.", "edge-a.demo.test.")}},
			update: []string{"web.demo.test. 0 CLASS255 A", "web.demo.test. 0 CLASS255 CNAME", "web.demo.test. 30 IN CNAME edge-a.demo.test."}, n: 2},
		{name: "with nothing known every owned type of every name is rewritten",
			want: map[zone.Key][]dns.RR{shopA: {a("shop.demo.test.", "10.0.0.1"), a("shop.demo.test.", "10.0.0.2")}},
			update: []string{"shop.demo.test. 0 CLASS255 A", "shop.demo.test. 0 CLASS255 CNAME", "shop.demo.test. 0 CLASS255 AAAA",
				"shop.demo.test. 30 IN A 10.0.0.1", "shop.demo.test. 30 IN A 10.0.0.2"}, n: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, n := Update("demo.test.", tt.before, tt.want)
			if tt.update == nil {
				if m != nil {
					t.Fatalf("want no update, got %v", m)
				}
				return
			}
			if m == nil {
				t.Fatal("want an update, got none")
			}
			if m.Opcode != dns.OpcodeUpdate || m.Question[0].Name != "demo.test." || m.Question[0].Qtype != dns.TypeSOA {
				t.Errorf("want an UPDATE of zone demo.test., got %v", m.MsgHdr)
			}
			if got := lines(m.Ns); !slices.Equal(got, tt.update) {
				t.Errorf("update section:\nwant %q\ngot  %q", tt.update, got)
			}
			if n != tt.n {
				t.Errorf("rrsets: want %d, got %d", tt.n, n)
			}
		})
	}
}

// An update from what the marker says requires that neither a name it writes nor a name above it
// in the zone holds an NS RRset on the primary, so that a delegation made there by hand is
// refused whole rather than its glue replaced; the apex, whose NS RRset is the zone's own, is
// never named, nor any name twice.
func TestNotDelegatedRequiresNoNSRRsetAtTheNamesOrAboveThemBelowTheApex(t *testing.T) {
	got := lines(notDelegated("demo.test.", []string{"shop.demo.test.", "x.sub.demo.test.", "y.Sub.demo.test.", "shop.demo.test."}))
	want := []string{"shop.demo.test. 0 NONE NS", "x.sub.demo.test. 0 NONE NS", "sub.demo.test. 0 NONE NS", "y.Sub.demo.test. 0 NONE NS"}
	if !slices.Equal(got, want) {
		t.Errorf("prerequisites:\nwant %q\ngot  %q", want, got)
	}
}

// An update split into parts carries in each part the prerequisites of the names that part writes
// (see notDelegated), and no more: a part is refused for a delegation of its own names only. An
// update without them (a full rewrite, which asked every name just before) is split without.
func TestEachPartOfASplitUpdateRequiresNoDelegationAtItsOwnNames(t *testing.T) {
	want := map[zone.Key][]dns.RR{}
	for i := range 200 {
		name := fmt.Sprintf("app-%d.demo.test.", i)
		if i%3 == 0 {
			name = fmt.Sprintf("app-%d.sub-%d.demo.test.", i, i%2)
		}
		want[zone.Key{Name: name, Type: dns.TypeA}] = []dns.RR{a(name, "10.0.0.1")}
	}
	marker := mark{at: Position{Seq: 1, Created: testStream}, digest: "0123", server: "dns-1", run: "r1"}
	claim := mark{claim: true, at: marker.at, server: "dns-1", run: "r1", since: testStream}
	const max = 1500 // the parts compressed, 13 guarded, 10 not
	for _, guarded := range []bool{true, false} {
		u, _ := Update("demo.test.", nil, want)
		if guarded {
			u.Answer = notDelegated("demo.test.", written(u))
		}
		parts := conditional("demo.test.", markerName, markerName, nil, held{}, u, marker, claim, max)
		if len(parts) < 10 {
			t.Fatalf("%d parts, want the update cut into many", len(parts))
		}
		records := 0
		for i, part := range parts {
			if part.Len() > max {
				t.Errorf("part %d holds %d bytes, more than %d", i, part.Len(), max)
			}
			var names []string
			for _, rr := range part.Ns {
				if name := rr.Header().Name; rr.Header().Rrtype != dns.TypeTXT {
					records++
					names = append(names, name)
					if _, parent, _ := strings.Cut(name, "."); strings.HasPrefix(parent, "sub-") {
						names = append(names, parent)
					}
				}
			}
			var required []string
			for _, rr := range part.Answer {
				if rr.Header().Rrtype == dns.TypeNS {
					if rr.Header().Class != dns.ClassNONE {
						t.Errorf("part %d requires %s, want only that NS RRsets do not exist", i, rr)
					}
					required = append(required, rr.Header().Name)
				}
			}
			if names = slices.Compact(slices.Sorted(slices.Values(names))); !guarded {
				names = nil
			}
			if required = slices.Sorted(slices.Values(required)); !slices.Equal(required, names) {
				t.Errorf("guarded %v: part %d requires no NS RRset at %q, want at %q", guarded, i, required, names)
			}
		}
		if records != len(u.Ns) {
			t.Errorf("the parts write %d of the owned names' records, want the update's %d", records, len(u.Ns))
		}
	}
}

// A failover of 10,000 names, each UPDATE of which is a round trip to the primary on the failover
// path, goes in nine UPDATEs, compressed, where it went in 15 of 939,604 bytes uncompressed, and a
// full rewrite of them in 13 where it went in 20; a failover of 1,000 names goes in one, where it
// went in two. Fewer would not hold them: a compression pointer reaches only the first 16 KB of a
// message, past which a name written again costs its labels below the zone. Each part, signed by
// a key of the longest name with the longest MAC, still fits the 65,535 bytes a TCP message
// carries, and the parts together write every record of the update once.
func TestAnUpdateOfManyNamesGoesInTheFewestCompressedUPDATEsEachSignedUnderTheTCPLimit(t *testing.T) {
	rrsets := func(names int, ip string) map[zone.Key][]dns.RR {
		out := map[zone.Key][]dns.RR{}
		for i := range names {
			own(out, fmt.Sprintf("app-%d.demo.test.", i), ip)
		}
		return out
	}
	longest := strings.Repeat(strings.Repeat("k", 63)+".", 3) + strings.Repeat("k", 61) + "."
	marker := mark{at: Position{Seq: 11, Created: testStream}, digest: "0123456789abcdef0123456789abcdef", server: "dns-1", run: "0123456789abcdef",
		serial: 4294967295, serialSet: true}
	claim := mark{claim: true, at: marker.at, server: "dns-1", run: "0123456789abcdef", since: testStream}
	read := held{rrs: []dns.RR{mark{at: Position{Seq: 10, Created: testStream}, digest: "0123456789abcdef0123456789abcdef", server: "dns-1",
		run: "0123456789abcdef", serial: 4294967294, serialSet: true}.rr(markerName)}}
	for _, c := range []struct {
		name     string
		names    int
		failover bool
		most     int
	}{
		{name: "a failover of 1,000 names", names: 1000, failover: true, most: 1},
		{name: "a failover of 10,000 names", names: 10000, failover: true, most: 9},
		{name: "a full rewrite of 10,000 names", names: 10000, most: 13},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := rrsets(c.names, "10.0.0.2")
			u, _ := Update("demo.test.", unknown(nil, want), want)
			if c.failover {
				u, _ = Update("demo.test.", rrsets(c.names, "10.0.0.1"), want)
				u.Answer = notDelegated("demo.test.", written(u))
			}
			parts := conditional("demo.test.", markerName, markerName, nil, read, u, marker, claim, maxUpdate)
			if len(parts) > c.most {
				t.Errorf("%d UPDATEs, want at most %d", len(parts), c.most)
			}
			records, bytes := 0, 0
			for i, part := range parts {
				part.SetTsig(longest, dns.HmacSHA512, 300, testStream.Unix())
				wire, _, err := dns.TsigGenerate(part, testSecret, "", false)
				if err != nil {
					t.Fatalf("sign part %d: %v", i, err)
				}
				if bytes += len(wire); len(wire) > dns.MaxMsgSize {
					t.Errorf("part %d is %d bytes signed, more than the %d a TCP message carries", i, len(wire), dns.MaxMsgSize)
				}
				var sent dns.Msg
				if err := sent.Unpack(wire); err != nil {
					t.Fatalf("unpack part %d: %v", i, err)
				}
				for _, rr := range sent.Ns {
					if rr.Header().Rrtype != dns.TypeTXT {
						records++
					}
				}
			}
			if records != len(u.Ns) {
				t.Errorf("the parts write %d records, want the update's %d", records, len(u.Ns))
			}
			t.Logf("%d UPDATEs, %d bytes signed", len(parts), bytes)
		})
	}
}

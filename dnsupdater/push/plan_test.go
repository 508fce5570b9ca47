package push

import (
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

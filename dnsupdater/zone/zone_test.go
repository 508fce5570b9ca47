package zone

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
)

func TestCompileNamesEveryBadStaticRecordByItsPath(t *testing.T) {
	c := eventstest.Config(t, `
zones:
  - name: demo.test
    records:
      - "www 300 IN A 192.0.2.1"
      - "www IN A not-an-address"
      - "outside.example. IN A 192.0.2.2"
      - "@ IN SOA ns1 host 1 2 3 4 5"
      - "shop IN TXT hello"
      - "alias IN CNAME www"
      - "alias IN TXT clash"
      - "*.wild IN A 192.0.2.3"
apps:
  - {name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "10.0.0.1:80"}]}]}
`)
	_, err := Compile(c)
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want a *config.Error, got %v", err)
	}
	want := []string{
		`zones[0].records[1]: parse "www IN A not-an-address"`,
		`zones[0].records[2]: "outside.example" lies outside zone "demo.test"`,
		`zones[0].records[3]: "@ IN SOA ns1 host 1 2 3 4 5": the SOA record is Detour's own`,
		`apps[0].fqdn: "shop.demo.test" already has TXT records in zone "demo.test"; an app owns its name`,
		`zones[0].records: "alias.demo.test" has a CNAME and other records`,
	}
	if len(cerr.Problems) != len(want) {
		t.Fatalf("want %d problems, got %d:\n%s", len(want), len(cerr.Problems), strings.Join(cerr.Problems, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(cerr.Problems[i], w) {
			t.Errorf("problem %d: want prefix %q, got %q", i, w, cerr.Problems[i])
		}
	}
}

func TestProjectServesApexGlueEdgesStaticRecordsAndEmptyNonTerminals(t *testing.T) {
	c := eventstest.Config(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 192.0.2.53}, {name: ns.other.example}]
    records: ["txt.deep.demo.test. 60 IN TXT \"hi\""]
edges: [{name: e1, region: west, hostname: e1.edge.demo.test, address: "2001:db8::e1"}]
apps:
  - {name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "10.0.0.1:80"}]}]}
`)
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(state.NewView(), map[string]uint32{"demo.test.": 7})[0]
	if z.SOA.Serial != 7 || z.SOA.Ns != "ns1.demo.test." || z.SOA.Mbox != "hostmaster.demo.test." || z.SOA.Minttl != 5 {
		t.Errorf("SOA: got %v", z.SOA)
	}
	want := []string{"demo.test.", "e1.edge.demo.test.", "edge.demo.test.", "ns1.demo.test.", "shop.demo.test.", "deep.demo.test.", "txt.deep.demo.test."}
	slices.SortFunc(want, Compare)
	if got := z.Names(); !slices.Equal(got, want) {
		t.Errorf("names: want %v, got %v", want, got)
	}
	recs := func(name string, typ uint16) []string {
		var out []string
		for _, rr := range z.Lookup(name).Records()[typ] {
			out = append(out, RData(rr))
		}
		return out
	}
	checks := []struct {
		name string
		typ  uint16
		want []string
	}{
		{"demo.test.", dns.TypeNS, []string{"ns1.demo.test.", "ns.other.example."}},
		{"ns1.demo.test.", dns.TypeA, []string{"192.0.2.53"}},
		{"e1.edge.demo.test.", dns.TypeAAAA, []string{"2001:db8::e1"}},
		{"shop.demo.test.", dns.TypeA, []string{"10.0.0.1"}},
		{"txt.deep.demo.test.", dns.TypeTXT, []string{`"hi"`}},
	}
	for _, ck := range checks {
		if got := recs(ck.name, ck.typ); !slices.Equal(got, ck.want) {
			t.Errorf("%s %s: want %v, got %v", ck.name, dns.TypeToString[ck.typ], ck.want, got)
		}
	}
	if !z.Lookup("deep.demo.test.").Empty() || !z.Lookup("edge.demo.test.").Empty() {
		t.Errorf("deep.demo.test and edge.demo.test: want empty non-terminals")
	}
}

func TestChangesListsReplacedAddedAndRemovedRRsetsInOrder(t *testing.T) {
	before := map[Key][]string{
		{"a.demo.test.", dns.TypeA}: {"10.0.0.1"},
		{"b.demo.test.", dns.TypeA}: {"10.0.0.2"},
		{"c.demo.test.", dns.TypeA}: {"10.0.0.3"},
	}
	after := map[Key][]string{
		{"a.demo.test.", dns.TypeA}:     {"10.0.0.9"},
		{"b.demo.test.", dns.TypeA}:     {"10.0.0.2"},
		{"c.demo.test.", dns.TypeCNAME}: {"a.demo.test."},
	}
	got := Changes(before, after)
	want := []events.RecordChange{
		{Name: "a.demo.test.", Type: "A", Before: []string{"10.0.0.1"}, After: []string{"10.0.0.9"}},
		{Name: "c.demo.test.", Type: "A", Before: []string{"10.0.0.3"}},
		{Name: "c.demo.test.", Type: "CNAME", After: []string{"a.demo.test."}},
	}
	if len(got) != len(want) {
		t.Fatalf("want %+v, got %+v", want, got)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Type != want[i].Type || !slices.Equal(got[i].Before, want[i].Before) || !slices.Equal(got[i].After, want[i].After) {
			t.Errorf("change %d: want %+v, got %+v", i, want[i], got[i])
		}
	}
}

func TestAnAppMayAnswerAtTheApexButNotWithACNAME(t *testing.T) {
	c := eventstest.Config(t, `
zones: [{name: demo.test}]
edges: [{name: e1, region: west, hostname: e1.demo.test, address: 10.9.0.1}]
apps:
  - {name: apex, fqdn: demo.test, pools: [{name: p, endpoints: [{address: "10.0.0.1:80"}]}]}
`)
	s, err := Compile(c)
	if err != nil {
		t.Fatalf("an address app at the apex: %v", err)
	}
	n := s.Project(state.NewView(), nil)[0].Lookup("demo.test.")
	recs := n.Records()
	if len(recs[dns.TypeA]) != 1 || len(recs[dns.TypeSOA]) != 1 || len(recs[dns.TypeNS]) != 1 {
		t.Errorf("apex: want A, SOA and NS, got %v", recs)
	}
	c.Apps[0].Ingress = []string{"e1"}
	_, err = Compile(c)
	if err == nil || !strings.Contains(err.Error(), `apps[0].ingress: "demo.test" is the zone apex`) {
		t.Errorf("an ingress app at the apex: want an error naming apps[0].ingress, got %v", err)
	}
}

func TestCompileRefusesWhatSecondariesRefuseOrIsNeverAnswered(t *testing.T) {
	tests := []struct {
		name    string
		records string
		want    string
	}{
		{name: "two CNAMEs at one name", records: `["a IN CNAME b", "a IN CNAME c"]`,
			want: `zones[0].records: "a.demo.test" has 2 CNAME records; a name is an alias of one name`},
		{name: "a CNAME beside other data", records: `["a IN CNAME b", "a IN TXT x"]`,
			want: `zones[0].records: "a.demo.test" has a CNAME and other records`},
		{name: "DNAME", records: `["old IN DNAME new.demo.test."]`,
			want: `zones[0].records[0]: "old IN DNAME new.demo.test.": DNAME records are not served; use CNAME records`},
		{name: "mixed TTLs in one RRset", records: `["a 300 IN A 192.0.2.1", "a 600 IN A 192.0.2.2"]`,
			want: `zones[0].records: "a.demo.test" has A records with TTLs 300 and 600; one RRset has one TTL (RFC 2181 §5.2)`},
		{name: "a CNAME loop", records: `["a IN CNAME b", "b IN CNAME c", "c IN CNAME a"]`,
			want: `zones: CNAME loop a.demo.test → b.demo.test → c.demo.test → a.demo.test`},
		{name: "a CNAME loop whose targets are spelt in upper case (RFC 4343)", records: `["a IN CNAME B", "b IN CNAME A.DEMO.TEST."]`,
			want: `zones: CNAME loop a.demo.test → b.demo.test → a.demo.test`},
		{name: "a CNAME loop through a name spelt with escapes", records: `["a IN CNAME \\066", "b IN CNAME a"]`,
			want: `zones: CNAME loop a.demo.test → b.demo.test → a.demo.test`},
		{name: "a CNAME loop through a wildcard", records: `["*.w IN CNAME x.w"]`,
			want: `zones: CNAME loop x.w.demo.test → x.w.demo.test`},
		{name: "a wildcard NS", records: `["*.w IN NS ns1.demo.test."]`,
			want: `zones[0].records[0]: "*.w IN NS ns1.demo.test.": a wildcard NS record is not served (RFC 4592 §4.2, §4.4)`},
		{name: "a wildcard below a delegation", records: `["sub IN NS ns.sub", "ns.sub IN A 192.0.2.7", "*.sub IN A 192.0.2.8"]`,
			want: `zones[0].records: wildcard "*.sub.demo.test" lies below the delegation "sub.demo.test" and is never answered`},
		{name: "a * label that is not leftmost", records: `["a.*.w IN A 192.0.2.1"]`,
			want: `zones[0].records[0]: "a.*.w IN A 192.0.2.1": a * label is a wildcard only leftmost (RFC 4592 §2.1.1); elsewhere it is served as nothing`},
		{name: "a record below a delegation", records: `["sub IN NS ns.other.example.", "txt.sub IN TXT never"]`,
			want: `zones[0].records[1]: "txt.sub.demo.test" is below the delegation sub.demo.test (zones[0].records[0]): it would never be answered`},
		{name: "an address below a delegation that none of its NS records names", records: `["sub IN NS ns.sub", "ns.sub IN A 192.0.2.7", "www.sub IN A 192.0.2.8"]`,
			want: `zones[0].records[2]: "www.sub.demo.test" is below the delegation sub.demo.test (zones[0].records[0]) and is none of its name servers: it would never be answered`},
		{name: "a record beside the NS records of a delegation", records: `["sub IN NS ns.sub", "ns.sub IN A 192.0.2.7", "sub IN TXT x"]`,
			want: `zones[0].records[2]: the TXT record of "sub.demo.test" stands at the delegation sub.demo.test (zones[0].records[0]), which is answered with a referral: it would never be answered`},
		{name: "data the parser takes but no message can carry: an odd number of hex digits", records: `["x IN SSHFP 1 1 abc"]`,
			want: `zones[0].records[0]: "x IN SSHFP 1 1 abc": its data cannot be written in a DNS message, so no answer or zone transfer could carry it: encoding/hex: odd length hex string`},
		{name: "an SVCB key given twice", records: `["x IN SVCB 1 . port=1 port=2"]`,
			want: `zones[0].records[0]: "x IN SVCB 1 . port=1 port=2": its data cannot be written in a DNS message, so no answer or zone transfer could carry it: dns: repeated SVCB keys are not allowed`},
		{name: "an ALPN id longer than 255 bytes", records: `["x IN HTTPS 1 . alpn=` + strings.Repeat("h", 256) + `"]`,
			want: `zones[0].records[0]: "x IN HTTPS 1 . alpn=` + strings.Repeat("h", 256) + `": its data cannot be written in a DNS message, so no answer or zone transfer could carry it: bad svcbalpn: alpn-id too long`},
		{name: "a delegation below a delegation", records: `["sub IN NS ns.other.example.", "deep.sub IN NS ns.other.example."]`,
			want: `zones[0].records[1]: "deep.sub.demo.test" is below the delegation sub.demo.test (zones[0].records[0]): it would never be answered`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(eventstest.Config(t, "zones:\n  - name: demo.test\n    records: "+tt.records+"\n"))
			var cerr *config.Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0] != tt.want {
				t.Errorf("want the one problem\n%s\ngot %v", tt.want, err)
			}
		})
	}
}

func TestAFailClosedAppUnderAWildcardIsRefusedWhereSecondariesTransferTheZone(t *testing.T) {
	app := func(name, fqdn, whenAllDown string) string {
		return "  - name: " + name + "\n    fqdn: " + fqdn + "\n    when_all_down: " + whenAllDown +
			"\n    pools: [{name: p, endpoints: [{address: \"127.0.0.1:80\"}]}]\n"
	}
	records := `["*.wild IN A 192.0.2.80", "x.other IN A 192.0.2.81", "*.other IN A 192.0.2.82", "y.z.other IN A 192.0.2.83"]`
	refusal := func(fqdn string) string {
		return `apps[0].when_all_down: with every endpoint down, fail_closed answers "` + fqdn + `" with no address, but a zone transfer or push cannot carry a name without records: the secondaries of zone "demo.test" would answer it from the wildcard "*.wild.demo.test" (RFC 4592 §2.2.2); use fail_open, or move the app from under the wildcard`
	}
	tests := []struct {
		name, transferTo, apps, want string
	}{
		{name: "fail_closed under a wildcard", transferTo: `["127.0.0.1"]`, apps: app("shop", "shop.wild.demo.test", "fail_closed"),
			want: refusal("shop.wild.demo.test")},
		{name: "fail_closed two labels under a wildcard", transferTo: `["127.0.0.1"]`, apps: app("shop", "a.shop.wild.demo.test", "fail_closed"),
			want: refusal("a.shop.wild.demo.test")},
		{name: "fail_closed under a wildcard, with no secondary", transferTo: `[]`, apps: app("shop", "shop.wild.demo.test", "fail_closed")},
		{name: "fail_open under a wildcard", transferTo: `["127.0.0.1"]`, apps: app("shop", "shop.wild.demo.test", "fail_open")},
		{name: "fail_closed above a fail_open app", transferTo: `["127.0.0.1"]`,
			apps: app("shop", "shop.wild.demo.test", "fail_closed") + app("api", "api.shop.wild.demo.test", "fail_open")},
		{name: "fail_closed beside no wildcard", transferTo: `["127.0.0.1"]`, apps: app("shop", "shop.demo.test", "fail_closed")},
		{name: "fail_closed with an ingress edge, which always answers a CNAME", transferTo: `["127.0.0.1"]`,
			apps: app("shop", "shop.wild.demo.test", "fail_closed") + "    ingress: [e1]\n"},
		{name: "fail_closed at a name whose descendants exist", transferTo: `["127.0.0.1"]`, apps: app("shop", "z.other.demo.test", "fail_closed")},
		{name: "fail_closed below a name that exists, whose wildcard is not its", transferTo: `["127.0.0.1"]`, apps: app("shop", "s.x.other.demo.test", "fail_closed")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "zones:\n  - name: demo.test\n    transfer_to: " + tt.transferTo + "\n    records: " + records +
				"\nedges: [{name: e1, region: west, hostname: e1.demo.test, address: 10.9.0.1}]\napps:\n" + tt.apps
			_, err := Compile(eventstest.Config(t, doc))
			var cerr *config.Error
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("want accepted, got %v", err)
			case tt.want != "" && (!errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0] != tt.want):
				t.Errorf("want the one problem\n%s\ngot %v", tt.want, err)
			}
		})
	}
}

func TestNamesCompareCaseInsensitivelyWhateverTheirSpelling(t *testing.T) {
	tests := []struct{ name, canonical string }{
		{name: "www.demo.test.", canonical: "www.demo.test."},
		{name: "WwW.Demo.TEST.", canonical: "www.demo.test."},
		{name: `\087ww.demo.test.`, canonical: "www.demo.test."},
		{name: `\*.demo.test.`, canonical: "*.demo.test."},
		{name: `a\ b.demo.test.`, canonical: `a\ b.demo.test.`},
	}
	for _, tt := range tests {
		if got := Canonical(tt.name); got != tt.canonical {
			t.Errorf("Canonical(%s) = %s, want %s", tt.name, got, tt.canonical)
		}
	}
}

func TestProjectKeepsNamesCanonical(t *testing.T) {
	s, err := Compile(eventstest.Config(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 192.0.2.53}]
    records:
      - "Upper IN CNAME MX"
      - "\\065bs IN CNAME mx.DEMO.test."
      - "mail IN MX 10 \\077X"
      - "srv IN SRV 0 0 80 Mx.Demo.Test."
      - "sub IN NS NS.SUB"
      - "ns.sub IN A 192.0.2.7"
      - "svcb IN SVCB 1 Host.Example."
      - "mx IN A 192.0.2.25"
`))
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(state.NewView(), nil)[0]
	want := []string{"demo.test.", "abs.demo.test.", "mail.demo.test.", "mx.demo.test.", "ns1.demo.test.", "srv.demo.test.",
		"sub.demo.test.", "ns.sub.demo.test.", "svcb.demo.test.", "upper.demo.test."}
	SortCanonical(want, func(name string) string { return name })
	if got := z.Names(); !slices.Equal(got, want) {
		t.Errorf("names: want %v, got %v", want, got)
	}
	for _, ck := range []struct {
		name string
		typ  uint16
		want string
	}{
		{"upper.demo.test.", dns.TypeCNAME, "mx.demo.test."},
		{"abs.demo.test.", dns.TypeCNAME, "mx.demo.test."},
		{"mail.demo.test.", dns.TypeMX, "10 mx.demo.test."},
		{"srv.demo.test.", dns.TypeSRV, "0 0 80 mx.demo.test."},
		{"sub.demo.test.", dns.TypeNS, "ns.sub.demo.test."},
		{"svcb.demo.test.", dns.TypeSVCB, "1 Host.Example."}, // as Knot keeps it: RFC 4034 §6.2 does not list SVCB
	} {
		n := z.Lookup(ck.name)
		if n == nil || len(n.RRsets[ck.typ]) == 0 {
			t.Errorf("%s %s: no record", ck.name, dns.TypeToString[ck.typ])
			continue
		}
		if got := RData(n.RRsets[ck.typ][0]); got != ck.want {
			t.Errorf("%s %s: want %q, got %q", ck.name, dns.TypeToString[ck.typ], ck.want, got)
		}
	}
}

func TestALabelHoldingADotIsOneLabel(t *testing.T) {
	for _, tt := range []struct{ name, parent string }{
		{name: "a.b.demo.test.", parent: "b.demo.test."},
		{name: `a\.b.demo.test.`, parent: "demo.test."},
		{name: `a\\.demo.test.`, parent: "demo.test."},   // the label "a\"
		{name: `a\\\..demo.test.`, parent: "demo.test."}, // the label "a\."
		{name: "test.", parent: ""},
	} {
		if got := Parent(tt.name); got != tt.parent {
			t.Errorf("Parent(%s) = %q, want %q", tt.name, got, tt.parent)
		}
	}
	s, err := Compile(eventstest.Config(t, `
zones:
  - name: demo.test
    records:
      - "A\\046B IN TXT \"one label, spelt with an escape\""
      - "sub IN NS ns.other.example."
      - "*.x\\.sub IN TXT \"beside the delegation, not below it\""
`))
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(state.NewView(), nil)[0]
	want := []string{"demo.test.", `a\.b.demo.test.`, "ns1.demo.test.", "sub.demo.test.", `x\.sub.demo.test.`, `*.x\.sub.demo.test.`}
	SortCanonical(want, func(name string) string { return name })
	if got := z.Names(); !slices.Equal(got, want) {
		t.Errorf("names: want %v, got %v (a label holding a dot makes no name of what follows the dot)", want, got)
	}
}

func TestCompileAcceptsGlueAndDSAtADelegation(t *testing.T) {
	_, err := Compile(eventstest.Config(t, `
zones:
  - name: demo.test
    records:
      - "sub IN NS NS.SUB"
      - "sub IN NS self.sub"
      - "sub IN NS sub"
      - "sub IN DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"
      - "ns.sub IN A 192.0.2.7"
      - "ns.sub IN AAAA 2001:db8::7"
      - "self.sub IN A 192.0.2.8"
      - "sub IN A 192.0.2.9"
`))
	if err != nil {
		t.Errorf("the glue of a delegation's name servers, whatever the case of their names, and its DS record: %v", err)
	}
}

// TestCompileRefusesAppsAndNameServerAddressesBelowADelegation: every query for a name below
// a delegation gets the referral, so an app or a name server's address there would never be
// answered. An edge whose hostname lies there is in the delegated zone: Detour leaves its
// address to that zone's servers, and an app's ingress CNAME to it ends in the referral.
func TestCompileRefusesAppsAndNameServerAddressesBelowADelegation(t *testing.T) {
	_, err := Compile(eventstest.Config(t, `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}, {name: ns2.sub.demo.test, address: 192.0.2.2}]
    records: ["sub IN NS ns.other.example."]
edges: [{name: e1, region: west, hostname: edge.sub.demo.test, address: 10.9.0.1}]
apps:
  - name: api
    fqdn: api.sub.demo.test
    pools: [{name: p, endpoints: [{address: "10.0.0.1:80"}]}]
  - name: web
    fqdn: web.demo.test
    ingress: [e1]
    pools: [{name: p, endpoints: [{address: "10.0.0.2:80"}]}]
`))
	want := []string{
		`zones[0].nameservers[1].address: "ns2.sub.demo.test" is below the delegation sub.demo.test (zones[0].records[0]) and is none of its name servers: it would never be answered`,
		`apps[0].fqdn: "api.sub.demo.test" is below the delegation sub.demo.test (zones[0].records[0]): it would never be answered`,
	}
	var cerr *config.Error
	if !errors.As(err, &cerr) || !slices.Equal(cerr.Problems, want) {
		t.Errorf("want the problems\n%s\ngot %v", strings.Join(want, "\n"), err)
	}
}

func TestAnEdgeBelowADelegationIsLeftToTheDelegatedZone(t *testing.T) {
	s, err := Compile(eventstest.Config(t, `
zones:
  - name: demo.test
    records: ["edges IN NS ns.cdn.example."]
edges: [{name: e1, region: west, hostname: pop1.edges.demo.test, address: 10.9.0.1}]
apps:
  - name: web
    fqdn: web.demo.test
    ingress: [e1]
    pools: [{name: p, endpoints: [{address: "10.0.0.2:80"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(state.NewView(), nil)[0]
	if n := z.Lookup("pop1.edges.demo.test."); n != nil && !n.Empty() {
		t.Errorf("pop1.edges.demo.test, below the delegation edges.demo.test: want no records, got %v", n.Records())
	}
	if n := z.Lookup("web.demo.test."); n == nil || n.App == nil || n.App.CNAME != "pop1.edges.demo.test." {
		t.Errorf("web.demo.test: want the ingress CNAME to pop1.edges.demo.test, got %+v", n)
	}
}

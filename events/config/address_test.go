package config_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

func TestAnEndpointAddressIsABareIPWhereNoPortIsNeeded(t *testing.T) {
	const head = "zones: [{name: demo.test}]\n"
	for _, c := range []struct {
		name, doc, want string
	}{
		{"an icmp check takes a bare IPv4", `apps: [{name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p, endpoints: [{address: 127.0.0.61}]}]}]`, ""},
		{"an icmp check takes a bare IPv6", `apps: [{name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p, endpoints: [{address: "2001:db8::1"}]}]}]`, ""},
		{"check.port gives the tcp check its port", `apps: [{name: a, fqdn: a.demo.test, check: {type: tcp, port: 443}, pools: [{name: p, endpoints: [{address: 10.0.0.1}]}]}]`, ""},
		{"check.port gives the http check its port", `apps: [{name: a, fqdn: a.demo.test, check: {type: http, port: 8080}, pools: [{name: p, endpoints: [{address: "2001:db8::1"}]}]}]`, ""},
		{"a tcp check without a port is refused", `apps: [{name: a, fqdn: a.demo.test, pools: [{name: p, endpoints: [{address: 10.0.0.1}]}]}]`,
			`apps[0].pools[0].endpoints[0].address: want ip:port: the tcp check needs a port and check.port sets none, got "10.0.0.1"`},
		{"a host name is refused", `apps: [{name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p, endpoints: [{address: "db.example:5432"}]}]}]`,
			`apps[0].pools[0].endpoints[0].address: want an IP address or ip:port, got "db.example:5432"`},
		{"an edge needs the port it forwards to", `apps: [{name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p, region: r, endpoints: [{address: 10.0.0.1}]}]}]
edges: [{name: e, region: r, hostname: e.demo.test, address: 127.0.0.21, apps: [{app: a, listen: "127.0.0.21:8080"}]}]`,
			`apps[0].pools[0].endpoints[0].address: want ip:port: edge "e" forwards to it, got "10.0.0.1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse("x.yaml", []byte(head+c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				e := cfg.Apps[0].Pools[0].Endpoints[0]
				if ip := e.AddrPort().Addr().String(); !strings.Contains(e.Address, ip) || e.Name == "" {
					t.Errorf("endpoint %+v answers %s", e, ip)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0] != c.want {
				t.Errorf("Parse = %v\nwant exactly: %s", err, c.want)
			}
		})
	}
}

func TestCheckWarnsWhenAnAnswerCannotShowAFailover(t *testing.T) {
	const head = "zones: [{name: demo.test}]\napps:\n"
	for _, c := range []struct {
		name, apps string
		want       []string
	}{
		{"two failover pools on one IP", `  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "127.0.0.1:18101"}]}, {name: p2, endpoints: [{address: "127.0.0.1:18102"}, {address: "127.0.0.2:18102"}]}]}`,
			[]string{`apps[0].pools[1]: shares 127.0.0.1 with pool "p1": a DNS answer carries addresses, not ports, so a failover between them changes no answer`}},
		{"one address behind every pool", `  - {name: a, fqdn: a.demo.test, policy: weighted, pools: [{name: p1, endpoints: [{address: "127.0.0.1:1"}]}, {name: p2, endpoints: [{address: "127.0.0.1:2"}]}]}`,
			[]string{`apps[0]: its answer can never change: every pool answers 127.0.0.1, and when all are down fail_open answers the same`}},
		{"one pool of one endpoint", `  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "10.0.0.1:80"}]}]}`,
			[]string{`apps[0]: its answer can never change: every pool answers 10.0.0.1, and when all are down fail_open answers the same`}},
		{"fail_closed can change the answer", `  - {name: a, fqdn: a.demo.test, when_all_down: fail_closed, pools: [{name: p1, endpoints: [{address: "10.0.0.1:80"}]}]}`, nil},
		{"distinct addresses", `  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "10.0.0.1:80"}]}, {name: p2, endpoints: [{address: "10.0.0.2:80"}]}]}`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse("x.yaml", []byte(head+c.apps+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Warnings(); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestAnIPv4MappedEndpointAddressIsTheIPv4AddressItMaps(t *testing.T) {
	const head = "zones: [{name: demo.test}]\napps:\n"
	cfg, err := config.Parse("x.yaml", []byte(head+`  - {name: a, fqdn: a.demo.test, check: {type: http, port: 8080}, pools: [{name: p1, endpoints: [{address: "[::ffff:127.0.0.1]:18101"}, {address: "::ffff:127.0.0.2"}]}, {name: p2, endpoints: [{address: "127.0.0.1:18102"}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range cfg.Apps[0].Pools[0].Endpoints {
		got = append(got, e.Name+" "+e.Address)
	}
	if want := []string{"127-0-0-1_18101 127.0.0.1:18101", "127-0-0-2 127.0.0.2"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	// A DNS answer carries 127.0.0.1 for both pools, whichever way the address is spelt.
	want := `apps[0].pools[1]: shares 127.0.0.1 with pool "p1": a DNS answer carries addresses, not ports, so a failover between them changes no answer`
	if w := cfg.Warnings(); strings.Join(w, "\n") != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(w, "\n"), want)
	}
	// One backend under two spellings is one endpoint, not two that a pool counts apart.
	_, err = config.Parse("x.yaml", []byte(head+`  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "127.0.0.1:80"}, {address: "[::ffff:127.0.0.1]:80"}]}]}
`))
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0] != `apps[0].pools[0].endpoints[1].name: duplicate endpoint "127-0-0-1_80" in pool "p1"` {
		t.Errorf("Parse = %v\nwant exactly: apps[0].pools[0].endpoints[1].name: duplicate endpoint \"127-0-0-1_80\" in pool \"p1\"", err)
	}
}

func TestAnIPv6EndpointAddressIsSpeltAndNamedOneWayWhateverItsSpelling(t *testing.T) {
	const head = "zones: [{name: demo.test}]\napps:\n"
	cfg, err := config.Parse("x.yaml", []byte(head+`  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "[2001:DB8::1]:80"}, {address: "[2001:db8:0::2]:80"}, {address: "[2001:0db8:0000:0000:0000:0000:0000:0003]:80"}, {address: "[2001:db8::4]:80"}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range cfg.Apps[0].Pools[0].Endpoints {
		got = append(got, e.Name+" "+e.Address)
	}
	want := []string{"2001-db8--1_80 [2001:db8::1]:80", "2001-db8--2_80 [2001:db8::2]:80", "2001-db8--3_80 [2001:db8::3]:80", "2001-db8--4_80 [2001:db8::4]:80"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	// One backend under two spellings is one endpoint, not two that a pool counts apart.
	_, err = config.Parse("x.yaml", []byte(head+`  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "[2001:db8::1]:80"}, {address: "[2001:DB8:0:0::1]:80"}]}]}
`))
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0] != `apps[0].pools[0].endpoints[1].name: duplicate endpoint "2001-db8--1_80" in pool "p1"` {
		t.Errorf("Parse = %v\nwant exactly: apps[0].pools[0].endpoints[1].name: duplicate endpoint \"2001-db8--1_80\" in pool \"p1\"", err)
	}
}

func TestASecondaryListedTwiceInNotifyIsRefusedWhateverItsSpelling(t *testing.T) {
	for _, c := range []struct {
		name, notify, want string
	}{
		{"two secondaries", `["127.0.0.1:53", "127.0.0.2:53"]`, ""},
		{"one address at two ports", `["127.0.0.1:53", "127.0.0.1:5300"]`, ""},
		{"the same entry twice", `["127.0.0.1:53", "127.0.0.1:53"]`, `zones[0].notify[1]: "127.0.0.1:53" names the secondary notify[0] names ("127.0.0.1:53")`},
		{"two spellings of one IPv6 address", `["[::1]:53", "[0::1]:53"]`, `zones[0].notify[1]: "[0::1]:53" names the secondary notify[0] names ("[::1]:53")`},
		{"an IPv4 address and its IPv6-mapped form", `["127.0.0.1:53", "[::ffff:127.0.0.1]:53"]`, `zones[0].notify[1]: "[::ffff:127.0.0.1]:53" names the secondary notify[0] names ("127.0.0.1:53")`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("x.yaml", []byte("zones: [{name: demo.test, notify: "+c.notify+"}]\n"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %s", err, c.want)
			}
		})
	}
}

func TestANotifyEntryIsKeptInOneSpellingWhateverItsWriting(t *testing.T) {
	for _, c := range []struct{ written, kept string }{
		{"127.0.0.1:53", "127.0.0.1:53"},
		{"[::1]:53", "[::1]:53"},
		{"[0::1]:53", "[::1]:53"},
		{"[0:0:0:0:0:0:0:1]:053", "[::1]:53"},
		{"[::ffff:127.0.0.1]:53", "127.0.0.1:53"},
		{"[2001:DB8::1]:5300", "[2001:db8::1]:5300"},
	} {
		t.Run(c.written, func(t *testing.T) {
			cfg, err := config.Parse("x.yaml", []byte(`zones: [{name: demo.test, notify: ["`+c.written+`"]}]`+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Zones[0].Notify; len(got) != 1 || got[0] != c.kept {
				t.Errorf("notify %q kept as %q, want %q", c.written, got, c.kept)
			}
		})
	}
}

// One primary under two spellings is one push: a reload that spells it otherwise changes nothing,
// and its events and logs name it one way. Before, [0::1]:053 stayed as written, and a pusher
// started anew for it.
func TestAPushServerIsKeptInOneSpellingWhateverItsWriting(t *testing.T) {
	for _, c := range []struct{ written, kept string }{
		{"127.0.0.1:53", "127.0.0.1:53"},
		{"127.0.0.1:053", "127.0.0.1:53"},
		{"[::1]:53", "[::1]:53"},
		{"[0:0:0:0:0:0:0:1]:053", "[::1]:53"},
		{"[::ffff:127.0.0.1]:53", "127.0.0.1:53"},
		{"[2001:DB8::1]:5300", "[2001:db8::1]:5300"},
	} {
		t.Run(c.written, func(t *testing.T) {
			cfg, err := config.Parse("x.yaml", []byte(`zones: [{name: demo.test, push: {server: "`+c.written+`", tsig: {name: k, secret: "c2VjcmV0"}}}]`+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Zones[0].Push.Server; got != c.kept {
				t.Errorf("push.server %q kept as %q, want %q", c.written, got, c.kept)
			}
		})
	}
}

func TestATransferToEntryWithAnIPv6ZoneIsRefused(t *testing.T) {
	for _, c := range []struct{ name, list, want string }{
		{"a link-local address", `["fe80::53"]`, ""},
		{"a link-local prefix", `["fe80::/10"]`, ""},
		{"a link-local address with its zone", `["192.0.2.1", "fe80::53%eth0"]`, `zones[0].transfer_to[1]: want an address without an IPv6 zone (a secondary is matched by its address on every link), got "fe80::53%eth0"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("x.yaml", []byte("zones: [{name: demo.test, transfer_to: "+c.list+"}]\n"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %s", err, c.want)
			}
		})
	}
}

func TestAPushServerOrNotifyEntryThatNoServerCanHaveIsRefused(t *testing.T) {
	// Before, port 0 and the unspecified address passed `detour check`: every push and NOTIFY
	// then failed at run time, for ever.
	push := func(server string) string {
		return `zones: [{name: demo.test, push: {server: "` + server + `", tsig: {name: k, secret: "c2VjcmV0"}}}]` + "\n"
	}
	notify := func(target string) string {
		return `zones: [{name: demo.test, notify: ["` + target + `"]}]` + "\n"
	}
	for _, c := range []struct{ name, doc, want string }{
		{"a push server", push("192.0.2.53:53"), ""},
		{"a push server on loopback IPv6", push("[::1]:5300"), ""},
		{"a push server at port 0", push("192.0.2.53:0"), `zones[0].push.server: want a server's port, got 0 in "192.0.2.53:0"`},
		{"a push server at 0.0.0.0", push("0.0.0.0:53"), `zones[0].push.server: want a server's address, got the unspecified address in "0.0.0.0:53"`},
		{"a push server at ::", push("[::]:53"), `zones[0].push.server: want a server's address, got the unspecified address in "[::]:53"`},
		{"a push server at a multicast address", push("224.0.0.251:53"), `zones[0].push.server: want a server's address, got a multicast address in "224.0.0.251:53"`},
		{"a push server named by its host name", push("primary.example.com:53"), `zones[0].push.server: want ip:port, an IP address and not a host name, got "primary.example.com:53"`},
		{"a push server without a port", push("192.0.2.53"), `zones[0].push.server: want ip:port, got "192.0.2.53"`},
		{"a push server with an IPv6 zone", push("[fe80::53%eth0]:53"), ``},
		{"a secondary", notify("192.0.2.54:53"), ""},
		{"a secondary at port 0", notify("192.0.2.54:0"), `zones[0].notify[0]: want a server's port, got 0 in "192.0.2.54:0"`},
		{"a secondary at 0.0.0.0", notify("0.0.0.0:53"), `zones[0].notify[0]: want a server's address, got the unspecified address in "0.0.0.0:53"`},
		{"a secondary at a multicast address", notify("[ff02::1]:53"), `zones[0].notify[0]: want a server's address, got a multicast address in "[ff02::1]:53"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("x.yaml", []byte(c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %s", err, c.want)
			}
		})
	}
}

func TestAnIPv4MappedPrefixShorterThanItsMappedRangeIsRefusedAndALongerOneMeansItsIPv4Prefix(t *testing.T) {
	doc := `
zones: [{name: demo.test, transfer_to: ["::ffff:127.0.0.0/104", "::ffff:10.0.0.0/80"]}]
apps:
  - name: geo
    fqdn: geo.demo.test
    policy: source
    sources: [{cidrs: ["::ffff:10.1.0.0/112", "::ffff:10.2.0.0/64"], pools: [a]}]
    pools: [{name: a, endpoints: [{address: "10.0.0.1:80"}]}]
dns:
  rate_limit: {exempt: ["::ffff:192.0.2.0/120", "::ffff:192.0.2.1/95"]}
`
	refusedWith(t, doc,
		`zones[0].transfer_to[1]: want an IPv4-mapped prefix of /96 or longer (::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n; a shorter one holds IPv6 addresses, and never an IPv4 client), got "::ffff:10.0.0.0/80"`,
		`apps[0].sources[0].cidrs[1]: want an IPv4-mapped prefix of /96 or longer (::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n; a shorter one holds IPv6 addresses, and never an IPv4 client), got "::ffff:10.2.0.0/64"`,
		`dns.rate_limit.exempt[1]: want an IPv4-mapped prefix of /96 or longer (::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n; a shorter one holds IPv6 addresses, and never an IPv4 client), got "::ffff:192.0.2.1/95"`,
	)
	for _, c := range []struct{ written, want string }{
		{"::ffff:127.0.0.0/104", "127.0.0.0/8"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0"},
		{"::ffff:10.1.2.3/112", "10.1.0.0/16"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"::/0", "::/0"},
	} {
		if got, err := config.ParsePrefix(c.written); err != nil || got.String() != c.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", c.written, got, err, c.want)
		}
	}
}

func FuzzParsePrefixHoldsTheClientsWritten(f *testing.F) {
	for _, s := range []string{"::ffff:10.0.0.0/104", "::ffff:10.1.2.3", "10.0.0.0/8", "2001:db8::/32", "::ffff:1.2.3.4/95", "fe80::1%eth0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return
		}
		if p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("ParsePrefix(%q) = %v: want it masked and in the family of the clients it holds", s, p)
		}
		if again, err := config.ParsePrefix(p.String()); err != nil || again != p {
			t.Fatalf("ParsePrefix(%q) = %v, which reads back as %v, %v", s, p, again, err)
		}
		if written := netip.MustParseAddr(strings.Split(strings.Split(s, "/")[0], "%")[0]); !p.Contains(written.Unmap()) {
			t.Fatalf("ParsePrefix(%q) = %v, which does not hold the address written", s, p)
		}
	})
}

func FuzzAnEndpointAddressIsKeptInTheFamilyItIsReachedIn(f *testing.F) {
	for _, s := range []string{"[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", "10.0.0.1:80", "[2001:db8::1]:443", "[::ffff:1.2.3.4%eth0]:1", "::ffff:0:0", "[::ffff:255.255.255.255]:65535", "[2001:DB8::1]:80", "[2001:db8:0::1]:80", "2001:0DB8::1", "[FE80::1%Eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		quoted, _ := json.Marshal(s)
		cfg, err := config.Parse("x.yaml", []byte("zones: [{name: demo.test}]\napps: [{name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p, endpoints: [{address: "+string(quoted)+"}]}]}]\n"))
		if err != nil {
			return
		}
		e := cfg.Apps[0].Pools[0].Endpoints[0]
		written, err := netip.ParseAddrPort(s)
		spelt := netip.AddrPortFrom(written.Addr().Unmap(), written.Port()).String()
		if err != nil {
			a, err := netip.ParseAddr(s)
			if err != nil {
				t.Fatalf("%q accepted, which is neither an address nor ip:port", s)
			}
			written, spelt = netip.AddrPortFrom(a, 0), a.Unmap().String()
		}
		if e.Address != spelt {
			t.Fatalf("%q is endpoint %q, want it spelt as netip does (RFC 5952), %q", s, e.Address, spelt)
		}
		if got := e.AddrPort(); got.Addr().Is4In6() || got.Addr().WithZone("") != written.Addr().Unmap().WithZone("") || got.Port() != written.Port() {
			t.Fatalf("%q is endpoint %q at %v, want the address written, unmapped", s, e.Address, got)
		}
		if e.Name != events.AddressToken(e.Address) {
			t.Fatalf("%q is endpoint %q named %q, want the name of that address", s, e.Address, e.Name)
		}
	})
}

// An endpoint without a name whose address an earlier Detour spelt as written, and named so,
// takes another name now; its state and overrides stay under the one of before, which a
// configuration reloaded after the upgrade no longer shows anywhere: detour check, apply and
// plan warn, naming both, until the address is spelt the new way or the name is set.
func TestAnEndpointWhoseNameChangesWithItsAddressSpellingIsWarnedAbout(t *testing.T) {
	cfg, err := config.Parse("x.yaml", []byte(`zones: [{name: demo.test}]
apps:
  - {name: a, fqdn: a.demo.test, pools: [{name: p1, endpoints: [{address: "[2001:DB8::1]:80"}, {address: "[2001:db8::2]:80"}, {name: kept, address: "[2001:DB8::3]:80"}, {address: "[::ffff:127.0.0.1]:80"}, {address: "10.0.0.1:080"}]}, {name: p2, endpoints: [{address: "10.0.0.9:80"}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`apps[0].pools[0].endpoints[0].address: "[2001:DB8::1]:80" is [2001:db8::1]:80, named 2001-db8--1_80; an earlier Detour named it 2001-DB8--1_80, under which its state and overrides stay: set name: 2001-DB8--1_80 to keep them, or write the address [2001:db8::1]:80 to take the new name`,
		`apps[0].pools[0].endpoints[4].address: "10.0.0.1:080" is 10.0.0.1:80, named 10-0-0-1_80; an earlier Detour named it 10-0-0-1_080, under which its state and overrides stay: set name: 10-0-0-1_080 to keep them, or write the address 10.0.0.1:80 to take the new name`,
	}
	if got := cfg.Warnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A zone-scoped address (fe80::1%eth0) is refused at its address: a DNS answer carries no zone,
// so clients would be sent fe80::1 on their own link, which the checks, reaching it through
// eth0, call healthy. Before, it was accepted with a name, and without one refused for the
// name derived from it, which the user never wrote.
func TestAZoneScopedEndpointAddressIsRefusedAtTheAddress(t *testing.T) {
	for _, c := range []struct{ endpoint, want string }{
		{`{address: "[fe80::1%eth0]:80"}`, `apps[0].pools[0].endpoints[0].address: want an address without a zone: a DNS answer carries none, got "[fe80::1%eth0]:80"`},
		{`{name: ll, address: "[fe80::1%eth0]:80"}`, `apps[0].pools[0].endpoints[0].address: want an address without a zone: a DNS answer carries none, got "[fe80::1%eth0]:80"`},
		{`{name: ll, address: "fe80::1%eth0"}`, `apps[0].pools[0].endpoints[0].address: want an address without a zone: a DNS answer carries none, got "fe80::1%eth0"`},
	} {
		_, err := config.Parse("x.yaml", []byte(`zones: [{name: demo.test}]
apps:
  - {name: a, fqdn: a.demo.test, check: {type: icmp}, pools: [{name: p1, endpoints: [`+c.endpoint+`]}]}
`))
		var ce *config.Error
		if !errors.As(err, &ce) || strings.Join(ce.Problems, "\n") != c.want {
			t.Errorf("%s: Parse = %v\nwant exactly: %s", c.endpoint, err, c.want)
		}
	}
}

package zone

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
)

// view builds a state view from "app/pool/endpoint=down" and "edge:name=down" statements.
func view(t *testing.T, statements ...string) *state.View {
	t.Helper()
	v := state.NewView()
	for i, s := range statements {
		what, status, _ := strings.Cut(s, "=")
		typ := map[string]string{"up": events.TypeEndpointUp, "down": events.TypeEndpointDown, "drained": events.TypeEndpointDrained}[status]
		var subject string
		if edge, ok := strings.CutPrefix(what, "edge:"); ok {
			subject = events.EdgeStateSubject(edge)
			typ = map[string]string{"up": events.TypeEdgeUp, "down": events.TypeEdgeDown}[status]
		} else {
			p := strings.Split(what, "/")
			subject = events.EndpointStateSubject(p[0], p[1], p[2])
		}
		e, err := events.New(typ, "test", time.Unix(1, 0), events.Transition{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Apply(subject, uint64(i+1), e); err != nil {
			t.Fatalf("apply %s: %v", s, err)
		}
	}
	return v
}

func variants(a Answer) string {
	var parts []string
	for _, v := range a.Variants {
		var ips []string
		for _, ip := range v {
			ips = append(ips, ip.String())
		}
		parts = append(parts, strings.Join(ips, ","))
	}
	return strings.Join(parts, " | ")
}

const apps = `
zones: [{name: demo.test}]
edges:
  - {name: edge-a, region: west, hostname: edge-a.demo.test, address: 10.9.0.1}
  - {name: edge-b, region: east, hostname: edge-b.demo.test, address: 10.9.0.2}
  - {name: edge-p, region: east, hostname: edge-p.demo.test, address: 10.9.0.3}
apps:
  - name: fo
    fqdn: fo.demo.test
    pools:
      - {name: p1, endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}, {address: "[2001:db8::1]:80"}]}
      - {name: p2, endpoints: [{address: "10.0.1.1:80"}]}
  - name: min
    fqdn: min.demo.test
    max_answers: 1
    pools:
      - {name: p1, min_available: 2, endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}]}
      - {name: p2, endpoints: [{address: "10.0.1.1:80"}, {address: "10.0.1.2:80"}]}
  - name: closed
    fqdn: closed.demo.test
    when_all_down: fail_closed
    pools:
      - {name: p1, endpoints: [{address: "10.0.0.1:80"}]}
  - name: rr
    fqdn: rr.demo.test
    policy: round_robin
    max_answers: 2
    pools:
      - {name: p1, endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}, {address: "10.0.0.3:80"}]}
  - name: ingress
    fqdn: www.demo.test
    ingress: [edge-a, edge-b]
    primary_edge: edge-p
    pools:
      - {name: p1, endpoints: [{address: "10.0.0.1:80"}]}
`

func TestDecideChoosesTheAnswerEachPolicyGives(t *testing.T) {
	c := eventstest.Config(t, apps)
	tests := []struct {
		name, app string
		state     []string
		v4, v6    string
		cname     string
		allDown   bool
	}{
		{name: "failover answers the first pool while nothing is decided", app: "fo", v4: "10.0.0.1,10.0.0.2", v6: "2001:db8::1"},
		{name: "failover leaves out a down endpoint of the first pool", app: "fo", state: []string{"fo/p1/10-0-0-1_80=down"}, v4: "10.0.0.2", v6: "2001:db8::1"},
		{name: "failover moves to the second pool when the first has none left", app: "fo",
			state: []string{"fo/p1/10-0-0-1_80=down", "fo/p1/10-0-0-2_80=down", "fo/p1/2001-db8--1_80=down"}, v4: "10.0.1.1", v6: ""},
		{name: "a drained endpoint is not answered", app: "fo", state: []string{"fo/p1/10-0-0-1_80=drained"}, v4: "10.0.0.2", v6: "2001:db8::1"},
		{name: "fail open answers every address when every pool is down", app: "fo",
			state: []string{"fo/p1/10-0-0-1_80=down", "fo/p1/10-0-0-2_80=down", "fo/p1/2001-db8--1_80=down", "fo/p2/10-0-1-1_80=down"},
			v4:    "10.0.0.1,10.0.0.2,10.0.1.1", v6: "2001:db8::1", allDown: true},
		{name: "min_available 2 fails the pool over when one of two is down", app: "min", state: []string{"min/p1/10-0-0-2_80=down"}, v4: "10.0.1.1"},
		{name: "max_answers caps the answer", app: "min", v4: "10.0.0.1"},
		{name: "fail closed answers nothing when every pool is down", app: "closed", state: []string{"closed/p1/10-0-0-1_80=down"}, v4: "", v6: "", allDown: true},
		{name: "round robin prepares every rotation, capped", app: "rr", v4: "10.0.0.1,10.0.0.2 | 10.0.0.2,10.0.0.3 | 10.0.0.3,10.0.0.1"},
		{name: "round robin rotates only the serving endpoints", app: "rr", state: []string{"rr/p1/10-0-0-2_80=down"}, v4: "10.0.0.1,10.0.0.3 | 10.0.0.3,10.0.0.1"},
		{name: "ingress answers a CNAME to the first live ingress edge", app: "ingress", cname: "edge-a.demo.test."},
		{name: "ingress moves to the sibling when the first edge is down", app: "ingress", state: []string{"edge:edge-a=down"}, cname: "edge-b.demo.test."},
		{name: "ingress falls back to the primary edge when no sibling is left", app: "ingress", state: []string{"edge:edge-a=down", "edge:edge-b=down"}, cname: "edge-p.demo.test."},
		{name: "an edge that came back up is preferred again", app: "ingress", state: []string{"edge:edge-a=down", "edge:edge-a=up"}, cname: "edge-a.demo.test."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(c, c.App(tt.app), view(t, tt.state...))
			if got.CNAME != tt.cname || got.AllDown != tt.allDown {
				t.Errorf("cname, all down: want %q %v, got %q %v", tt.cname, tt.allDown, got.CNAME, got.AllDown)
			}
			if tt.cname != "" {
				return
			}
			if v := variants(got.V4); v != tt.v4 {
				t.Errorf("A variants: want %q, got %q", tt.v4, v)
			}
			if v := variants(got.V6); v != tt.v6 {
				t.Errorf("AAAA variants: want %q, got %q", tt.v6, v)
			}
		})
	}
}

const weightedApp = `
zones: [{name: demo.test}]
apps:
  - name: api
    fqdn: api.demo.test
    policy: weighted
    max_answers: 1
    pools:
      - name: west
        weight: 3
        endpoints: [{address: "10.0.0.1:80", weight: 3}, {address: "10.0.0.2:80", weight: 1}, {address: "10.0.0.3:80", weight: 0}]
      - name: east
        endpoints: [{address: "10.0.1.1:80"}]
`

func TestWeightedAnswersAreDrawnInProportionToPoolAndEndpointWeights(t *testing.T) {
	c := eventstest.Config(t, weightedApp)
	tests := []struct {
		name  string
		state []string
		want  map[string]float64
	}{
		// west gets 3/4 of the answers, split 3:1; east 1/4; a weight of 0 is never answered.
		{name: "every endpoint serving", want: map[string]float64{"10.0.0.1": 0.5625, "10.0.0.2": 0.1875, "10.0.1.1": 0.25}},
		{name: "a down endpoint's share goes to its pool sibling", state: []string{"api/west/10-0-0-1_80=down"}, want: map[string]float64{"10.0.0.2": 0.75, "10.0.1.1": 0.25}},
		{name: "an unavailable pool's share goes to the other pool", state: []string{"api/east/10-0-1-1_80=down"}, want: map[string]float64{"10.0.0.1": 0.75, "10.0.0.2": 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans := Decide(c, c.App("api"), view(t, tt.state...)).V4
			const draws = 1 << 16
			counts := map[string]int{}
			for i := range draws {
				// Evenly spaced draws over [0, 2^32) measure each variant's share exactly.
				v := ans.Choose(uint32(uint64(i)<<32/draws), 0, netip.Addr{})
				if len(ans.Variants[v]) != 1 {
					t.Fatalf("max_answers 1: variant %d has %d addresses", v, len(ans.Variants[v]))
				}
				counts[ans.Variants[v][0].String()]++
			}
			if len(counts) != len(tt.want) {
				t.Errorf("answered addresses: want %v, got %v", tt.want, counts)
			}
			for ip, share := range tt.want {
				if got := float64(counts[ip]) / draws; got < share-0.001 || got > share+0.001 {
					t.Errorf("%s: want a share of %.4f, got %.4f", ip, share, got)
				}
			}
		})
	}
}

const sourceApp = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    policy: source
    sources:
      - cidrs: ["10.1.0.0/16", "2001:db8:1::/48"]
        pools: [west, east]
      - cidrs: ["10.2.0.0/16"]
        pools: [east]
    default_pools: [east, west]
    pools:
      - {name: west, endpoints: [{address: "10.0.0.1:80"}]}
      - {name: east, endpoints: [{address: "10.0.1.1:80"}]}
`

func TestSourceAnswersTheFirstAvailablePoolOfTheClientsRule(t *testing.T) {
	c := eventstest.Config(t, sourceApp)
	tests := []struct {
		name, client string
		state        []string
		want         string
	}{
		{name: "a client in the first rule gets its first pool", client: "10.1.2.3", want: "10.0.0.1"},
		{name: "an IPv6 client in the first rule gets its first pool", client: "2001:db8:1::5", want: "10.0.0.1"},
		{name: "a client in the first rule gets its backup pool when the first is down", client: "10.1.2.3", state: []string{"shop/west/10-0-0-1_80=down"}, want: "10.0.1.1"},
		{name: "a client in the second rule gets its pool", client: "10.2.0.9", want: "10.0.1.1"},
		{name: "a rule whose pools are all down falls back to the default pools", client: "10.2.0.9", state: []string{"shop/east/10-0-1-1_80=down"}, want: "10.0.0.1"},
		{name: "a client no rule holds gets the default pools", client: "192.0.2.1", want: "10.0.1.1"},
		{name: "an IPv4-mapped client matches IPv4 rules", client: "::ffff:10.1.0.1", want: "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans := Decide(c, c.App("shop"), view(t, tt.state...)).V4
			i := ans.Choose(0, 0, netip.MustParseAddr(tt.client))
			if got := fmt.Sprint(ans.Variants[i]); got != "["+tt.want+"]" {
				t.Errorf("want [%s], got %s", tt.want, got)
			}
		})
	}
}

func TestRotateChoosesEachVariantInTurn(t *testing.T) {
	a := rotate([]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}, 0)
	var got []int
	for turn := range uint64(4) {
		got = append(got, a.Choose(0, turn, netip.Addr{}))
	}
	if !slices.Equal(got, []int{0, 1, 0, 1}) {
		t.Errorf("want variants 0 1 0 1, got %v", got)
	}
}

func TestAnAnswerWithoutVariantsChoosesNone(t *testing.T) {
	var a Answer
	if got := a.Choose(1, 1, netip.Addr{}); got != -1 {
		t.Errorf("want -1, got %d", got)
	}
}

func TestAllPoolsGoingDownChangesNoAnswerWhenFailOpenAnswersTheSameAddresses(t *testing.T) {
	// An app's only endpoint went from undecided (answered) to down: fail_open answers it still,
	// so the zone keeps its serial; it took a new one, an empty zone change and a NOTIFY before.
	c := eventstest.Config(t, `
zones: [{name: demo.test}]
apps:
  - name: blog
    fqdn: blog.demo.test
    pools: [{name: east, endpoints: [{address: "10.0.0.1:80"}]}]
`)
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	z := s.Project(view(t), map[string]uint32{})[0]
	if r := s.Redecide(z, []int{0}, view(t, "blog/east/10-0-0-1_80=down")); len(r) != 0 {
		t.Errorf("redecided %d answers, want none: every address is answered before and after", len(r))
	}
}

package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

const walkingSkeleton = `
zones:
  - name: demo.test
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    policy: failover
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms, fall: 3, rise: 2}
    pools:
      - name: us-west
        min_available: 1
        endpoints: [{address: "127.0.0.11:8081"}]
      - name: us-east
        endpoints: [{address: "127.0.0.12:8081"}]
`

func TestTheIssueExampleParsesWithDefaults(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(walkingSkeleton))
	if err != nil {
		t.Fatal(err)
	}
	a := c.App("shop")
	if a == nil || a.FQDN != "shop.demo.test." || a.TTL != 5 || a.WhenAllDown != config.FailOpen || a.Quorum != 0.5 {
		t.Fatalf("app = %+v", a)
	}
	k := a.Check
	if k.Interval.D() != 250*time.Millisecond || k.Timeout.D() != 200*time.Millisecond || k.StaleAfter.D() != 750*time.Millisecond {
		t.Errorf("check timings = %+v", k)
	}
	if got := a.Pools[1].Endpoints[0].Name; got != "127-0-0-12_8081" {
		t.Errorf("default endpoint name = %q", got)
	}
	if got := a.Pools[1].MinAvailable.Need(1); got != 1 {
		t.Errorf("default min_available = %d, want 1", got)
	}
	if c.Zones[0].Nameservers[0].Name != "ns1.demo.test." {
		t.Errorf("default nameserver = %+v", c.Zones[0].Nameservers)
	}
}

func TestEveryMistakeIsReportedWithItsPath(t *testing.T) {
	doc := `
zones:
  - name: demo.test
apps:
  - name: shop
    fqdn: shop.other.test
    policy: fastest
    check: {type: http, interval: 1s, timeout: 2s}
    pools:
      - name: us-west
        endpoints: [{address: "10.0.0.1"}]
  - name: shop
    fqdn: www.demo.test
    pools: [{name: a, endpoints: [{address: "10.0.0.2:80"}]}]
`
	err := refusedWith(t, doc,
		`apps[0].fqdn: "shop.other.test" lies in none of the configured zones`,
		`apps[0].policy: want failover, weighted, round_robin or source, got "fastest"`,
		`apps[0].check.timeout: 2s is longer than the interval 1s`,
		`apps[0].pools[0].endpoints[0].address: want ip:port: the http check needs a port and check.port sets none, got "10.0.0.1"`,
		`apps[1].name: duplicate app "shop"`,
	)
	if !strings.HasPrefix(err.Error(), "detour.yaml: invalid configuration:\n") {
		t.Errorf("error text starts %q", err.Error())
	}
}

func TestTimingsPastTheirBoundsAreRefused(t *testing.T) {
	doc := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    hold_down: 721h
    check: {type: tcp, interval: 25h, timeout: 1s, stale_after: 100000h}
    pools: [{name: a, endpoints: [{address: "10.0.0.1:80"}]}]
  - name: api
    fqdn: api.demo.test
    hold_down: 720h
    check: {type: tcp, interval: 24h, timeout: 1s, stale_after: 720h}
    pools: [{name: a, endpoints: [{address: "10.0.0.2:80"}]}]
`
	refusedWith(t, doc,
		`apps[0].hold_down: want at most 720h (30 days), got 721h0m0s`,
		`apps[0].check.interval: want at most 24h, got 25h0m0s`,
		`apps[0].check.stale_after: want at most 720h (30 days), got 100000h0m0s`,
	)
}

func TestWeightsPastAMillionAreRefused(t *testing.T) {
	// Weights near the largest int add up past 2^64: an edge rotating over endpoints weighted
	// 2^63-1, 2^63-1 and 2 divided by their sum, 0, and crashed on every request for the app.
	doc := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    policy: weighted
    pools:
      - name: a
        weight: 1000001
        endpoints:
          - {address: "10.0.0.1:80", weight: 9223372036854775807}
          - {address: "10.0.0.2:80", weight: 9223372036854775807}
          - {address: "10.0.0.3:80", weight: 1000000}
`
	refusedWith(t, doc,
		`apps[0].pools[0].weight: want at most 1000000, got 1000001`,
		`apps[0].pools[0].endpoints[0].weight: want at most 1000000, got 9223372036854775807`,
		`apps[0].pools[0].endpoints[1].weight: want at most 1000000, got 9223372036854775807`,
	)
}

// refusedWith parses doc as detour.yaml and fails the test unless it is refused with exactly the
// problems want, in order; it returns the refusal.
func refusedWith(t *testing.T, doc string, want ...string) error {
	t.Helper()
	_, err := config.Parse("detour.yaml", []byte(doc))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse = %v, want *config.Error", err)
	}
	if strings.Join(ce.Problems, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(ce.Problems, "\n"), strings.Join(want, "\n"))
	}
	return err
}

func TestUnknownKeysAreRefused(t *testing.T) {
	_, err := config.Parse("x.yaml", []byte("zones: [{name: demo.test}]\napps: []\nedgez: []\n"))
	if err == nil || !strings.Contains(err.Error(), `x.yaml:3: unknown field "edgez" (did you mean "edges"?)`) {
		t.Fatalf("Parse = %v, want an unknown-field error", err)
	}
}

func TestAProblemInAnAliasedNodeIsReportedOnceHoweverOftenAliasesRepeatIt(t *testing.T) {
	// k aliases of k aliases of k aliases of one endpoint: a few kilobytes that stand for k³
	// endpoints. Walked once per alias, a read-only caller of POST /v1/config/plan could make the
	// controller spend minutes and gigabytes on one such document.
	const k = 30
	many := func(s string) string { return strings.TrimSuffix(strings.Repeat(s+", ", k), ", ") }
	doc := "zones: [{name: demo.test}]\napps:\n" +
		"- {name: a, fqdn: a.demo.test, pools: &P [{name: p, endpoints: &E [&e {address: \"10.0.0.1:80\", bogus: 1}, " +
		many("*e") + "]}, " + many("{name: q, endpoints: *E}") + "]}\n" +
		strings.Repeat("- {name: b, fqdn: b.demo.test, pools: *P}\n", k)
	_, err := config.Parse("x.yaml", []byte(doc))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse = %v, want a configuration error", err)
	}
	n := 0
	for _, p := range ce.Problems {
		if strings.Contains(p, `unknown field "bogus"`) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the unknown field of the aliased endpoint is reported %d times, want once", n)
	}
}

func TestAShareThatIsNotANumberIsRefused(t *testing.T) {
	// NaN passes any range check written as "refuse below or above": a quorum of NaN would have
	// kept every endpoint of the app down, and a min_available of NaN% counted as 1.
	doc := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    quorum: %s
    pools:
      - name: west
        min_available: %s
        endpoints: [{address: "127.0.0.11:8081"}]
`
	for _, c := range []struct{ quorum, minAvailable, want string }{
		{".nan", "1", "x.yaml:6: apps[0].quorum: want a share in (0, 1], got NaN"},
		{"0.5", "NaN%", `x.yaml:9: apps[0].pools[0].min_available: want a percentage in (0, 100], got "NaN%"`},
	} {
		_, err := config.Parse("x.yaml", []byte(fmt.Sprintf(doc, c.quorum, c.minAvailable)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse = %v, want it to say %s", err, c.want)
		}
	}
}

func TestAnEmptyDocumentIsRefused(t *testing.T) {
	_, err := config.Parse("x.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "document is empty") {
		t.Fatalf("Parse = %v", err)
	}
}

func TestMinAvailableTakesACountOrAShare(t *testing.T) {
	doc := `
zones: [{name: demo.test}]
apps:
  - name: a
    fqdn: a.demo.test
    pools:
      - name: p
        min_available: 50%
        endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}, {address: "10.0.0.3:80"}]
      - name: q
        min_available: 4
        endpoints: [{address: "10.0.0.4:80"}]
`
	_, err := config.Parse("x.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "apps[0].pools[1].min_available: 4 is more than the pool's 1 endpoints") {
		t.Fatalf("Parse = %v", err)
	}
	if got := (config.MinAvailable{Percent: 50}).Need(3); got != 2 {
		t.Errorf("50%% of 3 = %d, want 2", got)
	}
}

func FuzzParseNeverPanics(f *testing.F) {
	f.Add([]byte(walkingSkeleton))
	f.Add([]byte("zones: [{name: x}]\napps: [{name: a, pools: [{min_available: 0%}]}]"))
	f.Add([]byte(headersDoc(`headers: {"X Bad": "a\r\nb", X-Ok: "a\tb"}, headers_file: {Authorization: /k}, headers_env: {"X:": K}`)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := config.Parse("fuzz.yaml", doc)
		if err == nil && len(c.Validate()) > 0 {
			t.Fatalf("accepted a configuration that does not validate")
		}
	})
}

func TestTheDNSSchedulerSliceDefaultsTo300MicrosecondsAndStaysInTheKernelsRange(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(walkingSkeleton))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.DNS.SchedSlice; got == nil || got.D() != 300*time.Microsecond {
		t.Errorf("default dns.sched_slice = %v, want 300µs", got)
	}
	c, err = config.Parse("detour.yaml", []byte(walkingSkeleton+"dns: {sched_slice: 0s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.DNS.SchedSlice; got == nil || *got != 0 {
		t.Errorf("dns.sched_slice 0s = %v, want 0 (the kernel's own slice)", got)
	}
	refusedWith(t, walkingSkeleton+"dns: {sched_slice: 50us}\n",
		`dns.sched_slice: want 0 (the kernel's own slice) or 100µs to 100ms, got 50µs`)
	refusedWith(t, walkingSkeleton+"dns: {sched_slice: 1s}\n",
		`dns.sched_slice: want 0 (the kernel's own slice) or 100µs to 100ms, got 1s`)
}

func TestTwoZonesWhoseChangesWouldShareAnEventSubjectAreRefused(t *testing.T) {
	// a_b.test and a.b_test both record their changes on detour.dns.a_b_test: each would read
	// the other's as its own history and answer IXFR from it.
	doc := `
zones: [{name: a_b.test}, {name: a.b_test}]
apps: [{name: shop, fqdn: shop.a_b.test, pools: [{name: a, endpoints: [{address: "10.0.0.1:80"}]}]}]
`
	refusedWith(t, doc, `zones[1].name: zone "a.b_test" has the event subjects of zone "a_b.test" (detour.dns.a_b_test.<server>): rename one`)
}

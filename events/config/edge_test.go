package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

func TestASecondaryEdgeMustFrontTheApp(t *testing.T) {
	_, err := config.Parse("detour.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080", secondary: edge-east}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.22
`))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a configuration error", err)
	}
	want := `edges[0].apps[0].secondary: edge "edge-east" does not front app "shop"`
	if strings.Join(ce.Problems, "\n") != want {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(ce.Problems, "\n"), want)
	}
}

func TestAnEdgesHeartbeatDeadlinePast720hIsRefused(t *testing.T) {
	// fall × interval past the largest duration wrapped around to a negative deadline, which
	// every edge had missed at once: the controller recorded it down.
	doc := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, endpoints: [{address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-a
    region: us-west
    hostname: edge-a.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 1000000h, fall: 3}
  - name: edge-b
    region: us-west
    hostname: edge-b.demo.test
    address: 127.0.0.22
    heartbeat: {interval: 1s, fall: 9999999999}
  - name: edge-c
    region: us-west
    hostname: edge-c.demo.test
    address: 127.0.0.23
    heartbeat: {interval: 24h, fall: 30}
`
	refusedWith(t, doc,
		`edges[0].heartbeat.interval: want at most 24h, got 1000000h0m0s`,
		`edges[1].heartbeat.fall: fall × interval want at most 720h (30 days), got 9999999999 × 1s`,
	)
}

func TestAnEdgeFrontingAnAppOnTwoListenersIsRefused(t *testing.T) {
	// The probers check an edge's listener of an app as one endpoint, <edge> of the app's _edge
	// pool: two listeners would share its results, one's failure hidden by the other's success.
	refusedWith(t, `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080"}, {app: shop, listen: "127.0.0.21:8443", mode: tcp}]
`, `edges[0].apps[1].app: app "shop" is already fronted by edges[0].apps[0]: one listener per app`)
}

// oneEdgeApp is a configuration of one edge fronting one app, with the YAML fields extra
// (", key: value…") on its edge app.
func oneEdgeApp(extra string) string {
	return `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{address: "127.0.0.11:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080"` + extra + `}]
`
}

func TestAnEdgeAppsClientBodyTimeoutDefaultsTo60sAndMustBePositive(t *testing.T) {
	cfg, err := config.Parse("detour.yaml", []byte(oneEdgeApp("")))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Edges[0].Apps[0].Timeouts.ClientBody.D(); got != time.Minute {
		t.Errorf("client_body = %s, want 1m0s", got)
	}
	refusedWith(t, oneEdgeApp(", timeouts: {client_body: -1s}"), `edges[0].apps[0].timeouts.client_body: must be positive, got -1s`)
}

func TestAnEdgeAppsResponseBodyTimeoutDefaultsTo60sAndMustBePositive(t *testing.T) {
	cfg, err := config.Parse("detour.yaml", []byte(oneEdgeApp("")))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Edges[0].Apps[0].Timeouts.ResponseBody.D(); got != time.Minute {
		t.Errorf("response_body = %s, want 1m0s", got)
	}
	if cfg, err = config.Parse("detour.yaml", []byte(oneEdgeApp(", timeouts: {response_body: 5m}"))); err != nil {
		t.Fatal(err)
	} else if got := cfg.Edges[0].Apps[0].Timeouts.ResponseBody.D(); got != 5*time.Minute {
		t.Errorf("response_body = %s, want 5m0s as set", got)
	}
	refusedWith(t, oneEdgeApp(", timeouts: {response_body: -1s}"), `edges[0].apps[0].timeouts.response_body: must be positive, got -1s`)
}

func TestAnEdgeAppDropsUnderscoredHeaderNamesUnlessUnderscoresInHeadersIsSet(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  bool
	}{{"", false}, {", underscores_in_headers: false", false}, {", underscores_in_headers: true", true}} {
		cfg, err := config.Parse("detour.yaml", []byte(oneEdgeApp(tc.extra)))
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := cfg.Edges[0].Apps[0].UnderscoresInHeaders; got != tc.want {
			t.Errorf("%q: underscores_in_headers = %v, want %v", tc.extra, got, tc.want)
		}
	}
}

// An edge app's listener holds at most max_conns client connections, max_conns_per_client of
// them from one client; the defaults (10,000 and 1,000) never limit an ordinary deployment, and
// a per-client cap a lowered max_conns would make meaningless follows it down.
func TestAnEdgeAppsConnectionLimitsHaveDefaultsAndAreValidated(t *testing.T) {
	for _, tc := range []struct {
		extra               string
		maxConns, perClient int
	}{
		{"", 10000, 1000},
		{", max_conns: 50000, max_conns_per_client: 64", 50000, 64},
		{", max_conns: 100", 100, 100},
	} {
		cfg, err := config.Parse("detour.yaml", []byte(oneEdgeApp(tc.extra)))
		if err != nil {
			t.Fatal(err)
		}
		if ea := cfg.Edges[0].Apps[0]; ea.MaxConns != tc.maxConns || ea.MaxConnsPerClient != tc.perClient {
			t.Errorf("with %q: max_conns %d, max_conns_per_client %d, want %d and %d", tc.extra, ea.MaxConns, ea.MaxConnsPerClient, tc.maxConns, tc.perClient)
		}
	}
	refusedWith(t, oneEdgeApp(", max_conns: -1, max_conns_per_client: -2"),
		`edges[0].apps[0].max_conns: want 1 to 1000000, got -1`,
		`edges[0].apps[0].max_conns_per_client: want at least 1, got -2`)
	refusedWith(t, oneEdgeApp(", max_conns: 2000000"), `edges[0].apps[0].max_conns: want 1 to 1000000, got 2000000`)
	refusedWith(t, oneEdgeApp(", max_conns: -5"), `edges[0].apps[0].max_conns: want 1 to 1000000, got -5`)
	refusedWith(t, oneEdgeApp(", max_conns: 10, max_conns_per_client: 20"),
		`edges[0].apps[0].max_conns_per_client: want at most max_conns (10), got 20`)
}

// An edge's max_conns bounds the client connections of all its listeners together; left out
// (0), the edge derives it from its host's file limit, which the controller validating the
// file cannot know.
func TestAnEdgesMaxConnsIsZeroForTheFileLimitsDefaultAndIsValidated(t *testing.T) {
	withEdgeMax := func(v string) string {
		return strings.Replace(oneEdgeApp(""), "    apps:", "    max_conns: "+v+"\n    apps:", 1)
	}
	for _, tc := range []struct {
		v    string
		want int
	}{{"0", 0}, {"1", 1}, {"1000000", 1000000}} {
		cfg, err := config.Parse("detour.yaml", []byte(withEdgeMax(tc.v)))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Edges[0].MaxConns; got != tc.want {
			t.Errorf("max_conns: %s gave %d, want %d", tc.v, got, tc.want)
		}
	}
	refusedWith(t, withEdgeMax("-1"), `edges[0].max_conns: want 1 to 1000000, or 0 for the default from the file limit, got -1`)
	refusedWith(t, withEdgeMax("1000001"), `edges[0].max_conns: want 1 to 1000000, or 0 for the default from the file limit, got 1000001`)
}

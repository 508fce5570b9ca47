package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

// twoEdges is a configuration of n apps, each fronted by edge-a and edge-b, app0 by edge-a only.
func twoEdges(t *testing.T, n int) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("zones: [{name: demo.test}]\napps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: app%d, fqdn: app%d.demo.test, pools: [{name: p, region: r, endpoints: [{address: \"10.0.%d.%d:80\"}]}]}\n",
			i, i, i/250, 1+i%250)
	}
	b.WriteString("edges:\n")
	for _, e := range []string{"edge-a", "edge-b"} {
		fmt.Fprintf(&b, "  - name: %s\n    region: r\n    hostname: %s.demo.test\n    address: 10.9.0.1\n    apps:\n", e, e)
		for i := range n {
			if i == 0 && e == "edge-b" {
				continue
			}
			fmt.Fprintf(&b, "      - {app: app%d, listen: \"127.0.0.1:%d\"}\n", i, 2000+i)
		}
	}
	c, err := config.Parse("demo.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func edgeNames(es []*config.Edge) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Name)
	}
	return strings.Join(s, ",")
}

func TestLookupsFindAppsEdgesAndTheEdgesFrontingAnApp(t *testing.T) {
	c := twoEdges(t, 3000)
	if a := c.App("app2999"); a == nil || a.FQDN != "app2999.demo.test." {
		t.Errorf("App(app2999) = %+v", a)
	}
	if c.App("app3000") != nil || c.Edge("edge-c") != nil || c.EdgeApp("edge-b", "app0") != nil || c.EdgeApp("edge-c", "app1") != nil {
		t.Error("a lookup of a name not in the configuration found something")
	}
	if ea := c.EdgeApp("edge-b", "app7"); ea == nil || ea.Listen != "127.0.0.1:2007" {
		t.Errorf("EdgeApp(edge-b, app7) = %+v", ea)
	}
	for app, want := range map[string]string{"app0": "edge-a", "app1": "edge-a,edge-b", "app3000": ""} {
		if got := edgeNames(c.Fronting(app)); got != want {
			t.Errorf("Fronting(%s) = %q, want %q", app, got, want)
		}
	}
}

func TestLookupsFollowAConfigurationChangedAfterParsing(t *testing.T) {
	c := twoEdges(t, 10)
	c.Apps[3].Name = "renamed"
	c.Apps = append(c.Apps[:1], c.Apps[2:]...) // app1 gone: every later app moves up
	if a := c.App("renamed"); a == nil || a.FQDN != "app3.demo.test." {
		t.Errorf("App(renamed) = %+v", a)
	}
	if a := c.App("app5"); a == nil || a.Name != "app5" {
		t.Errorf("App(app5) = %+v", a)
	}
	if c.App("app1") != nil || c.App("app3") != nil {
		t.Error("App finds an app no longer in the configuration")
	}
	c.Edges[0].Name = "edge-z"
	if e := c.Edge("edge-z"); e == nil || c.Edge("edge-a") != nil {
		t.Errorf("Edge(edge-z) = %v, Edge(edge-a) = %v after a rename", e, c.Edge("edge-a"))
	}
}

func TestANameIsInAZoneOnlyWhenItsLabelsEndWithTheZones(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"demo.test.", true},
		{"www.demo.test.", true},
		{"a.b.demo.test.", true},
		{"ademo.test.", false},
		{"test.", false},
		{`a\.demo.test.`, false},   // the one label "a.demo" below test.
		{`a\\.demo.test.`, true},   // the label "a\" below demo.test.
		{`a\\\.demo.test.`, false}, // the label "a\.demo" below test.
		{`a\046demo.test.`, false}, // the escape of a dot spelt in decimal
	}
	for _, tt := range tests {
		if got := config.InZone(tt.name, "demo.test."); got != tt.want {
			t.Errorf("InZone(%s, demo.test.) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

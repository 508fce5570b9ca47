package config_test

import (
	"errors"
	"strings"
	"testing"

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

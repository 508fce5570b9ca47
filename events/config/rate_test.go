package config_test

import (
	"testing"

	"github.com/detourdev/detour/events/config"
)

func TestProbeRateCountsEveryEndpointOncePerIntervalFromEveryRegion(t *testing.T) {
	c, err := config.Parse("x.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 250ms}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.11:80"}, {address: "127.0.0.13:80"}]}
      - {name: east, region: us-east, endpoints: [{address: "127.0.0.12:80"}]}
  - name: blog
    fqdn: blog.demo.test
    check: {type: tcp, interval: 5s}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.14:80"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	// shop: 3 endpoints × 4/s; blog: 1 × 0.2/s; from 2 regions.
	if got, want := c.ProbeRate(), (3*4+0.2)*2; got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("ProbeRate: got %v/s, want %v/s", got, want)
	}
}

package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

const regionsDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.11:8081"}]}
      - {name: east, region: us-east, endpoints: [{address: "127.0.0.12:8081"}]}
`

func TestRegionsDefaultToThePoolsRegions(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(regionsDoc))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"us-east", "us-west"}; !reflect.DeepEqual(c.ProbingRegions(), want) {
		t.Errorf("probing regions = %v, want %v", c.ProbingRegions(), want)
	}
	if !c.RegionAllowed("us-west") || c.RegionAllowed("mars") {
		t.Errorf("us-west allowed %v, mars allowed %v; want true, false", c.RegionAllowed("us-west"), c.RegionAllowed("mars"))
	}
}

func TestWithoutRegionsAnywhereAnyRegionCounts(t *testing.T) {
	doc := strings.NewReplacer("region: us-west, ", "", "region: us-east, ", "").Replace(regionsDoc)
	c, err := config.Parse("detour.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ProbingRegions()) != 0 || !c.RegionAllowed("anywhere") {
		t.Errorf("probing regions = %v, anywhere allowed %v; want none and any allowed", c.ProbingRegions(), c.RegionAllowed("anywhere"))
	}
}

func TestConfiguredRegionsMayProbeFromWherePoolsAreNot(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte("regions: [us-west, us-east, eu-central]\n"+regionsDoc))
	if err != nil {
		t.Fatal(err)
	}
	if !c.RegionAllowed("eu-central") {
		t.Error("eu-central is configured but not allowed")
	}
}

func TestAPoolInAnUnconfiguredRegionIsRefused(t *testing.T) {
	_, err := config.Parse("detour.yaml", []byte("regions: [us-west, us-west, \"eu central\"]\n"+regionsDoc))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a configuration error", err)
	}
	want := []string{
		`regions[1]: duplicate region "us-west"`,
		`regions[2]: "eu central" may hold only letters, digits, '_' and '-'`,
		`apps[0].pools[1].region: region "us-east" is not among the configured regions [us-west us-west eu central]`,
	}
	if !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(ce.Problems, "\n"), strings.Join(want, "\n"))
	}
}

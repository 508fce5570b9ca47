package config

import (
	"fmt"
	"slices"
	"sort"
)

// ProbingRegions are the regions whose probe results count: Regions, else the regions the pools
// name. Empty means any region counts (none is configured and no pool names one).
func (c *Config) ProbingRegions() []string {
	if len(c.Regions) > 0 {
		return c.Regions
	}
	return c.poolRegions()
}

// RegionAllowed reports whether results probed from region count.
func (c *Config) RegionAllowed(region string) bool {
	r := c.ProbingRegions()
	return len(r) == 0 || slices.Contains(r, region)
}

// poolRegions lists the regions the pools name, sorted, each once: from the index ApplyDefaults
// builds (the controller and what-if ask once per result, and a scan of 10,000 apps took a third
// of the controller's CPU), or by a scan of a configuration built by hand.
func (c *Config) poolRegions() []string {
	if c.names != nil {
		return c.names.poolRegions
	}
	return c.scanPoolRegions()
}

func (c *Config) scanPoolRegions() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			if p.Region != "" && !seen[p.Region] {
				seen[p.Region] = true
				out = append(out, p.Region)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (c *Config) validateRegions(p *problems) {
	seen := map[string]bool{}
	for i, r := range c.Regions {
		path := fmt.Sprintf("regions[%d]", i)
		p.token(path, r)
		if seen[r] {
			p.add(path, "duplicate region %q", r)
		}
		seen[r] = true
	}
	for i, a := range c.Apps {
		for j, pl := range a.Pools {
			if pl.Region == "" {
				continue
			}
			path := fmt.Sprintf("apps[%d].pools[%d].region", i, j)
			if len(c.Regions) > 0 && !seen[pl.Region] {
				p.add(path, "region %q is not among the configured regions %v", pl.Region, c.Regions)
			}
		}
	}
}

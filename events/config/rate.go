package config

// ProbeRate is how many probe results per second the configuration makes the probers publish,
// every region together: each endpoint is checked once per interval from each region that runs
// a pool of the configuration (the probing regions, at least one).
func (c *Config) ProbeRate() float64 {
	regions := map[string]bool{}
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			regions[p.Region] = true
		}
	}
	var perRegion float64
	for _, a := range c.Apps {
		iv := a.Check.Interval.D().Seconds()
		if iv <= 0 {
			continue
		}
		for _, p := range a.Pools {
			perRegion += float64(len(p.Endpoints)) / iv
		}
	}
	return perRegion * float64(max(len(regions), 1))
}

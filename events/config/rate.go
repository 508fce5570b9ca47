package config

import "github.com/detourdev/detour/events"

// ProbeRate is how many probe results per second the configuration makes the probers publish,
// every region together: each endpoint, and each edge app listener, is checked once per its
// app's interval from each region that runs a pool of the configuration (the probing regions,
// at least one).
func (c *Config) ProbeRate() float64 {
	regions := map[string]bool{}
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			regions[p.Region] = true
		}
	}
	perSecond := func(a *App) float64 {
		if a == nil || a.Check.Interval.D() <= 0 {
			return 0
		}
		return 1 / a.Check.Interval.D().Seconds()
	}
	var perRegion float64
	for i := range c.Apps {
		for _, p := range c.Apps[i].Pools {
			perRegion += float64(len(p.Endpoints)) * perSecond(&c.Apps[i])
		}
	}
	for _, e := range c.Edges {
		for _, ea := range e.Apps {
			perRegion += perSecond(c.App(ea.App))
		}
	}
	return perRegion * float64(max(len(regions), 1))
}

// StreamOptions sizes the streams for this configuration: PROBES by its check rate and its
// streams.probes bounds, the probers' bucket by its probing regions (when it names none,
// events.DefaultProbingRegions), every stream with replicas.
func (c *Config) StreamOptions(replicas int) events.StreamOptions {
	return events.StreamOptions{Replicas: replicas, ProbeRate: c.ProbeRate(),
		ProbeRetention: c.Streams.Probes.MaxAge.D(), ProbeMaxBytes: int64(c.Streams.Probes.MaxBytes),
		Regions: len(c.ProbingRegions())}
}

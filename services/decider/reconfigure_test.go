package decider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/override"
)

func TestANewConfigurationIsDecidedWithoutARestartAndKeepsWhatItKnew(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "d1", func(o *decider.Options) { o.Configs = configs })
	p := &prober{t: t, js: srv.JS, region: "local"}
	// w1 goes down under the first configuration.
	for range 3 {
		p.send("shop", "west", "w1", false)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down")

	// The next one adds an app and lowers shop's fall to 1.
	next := strings.Replace(shopYAML, "fall: 3", "fall: 1", 1) + `  - name: blog
    fqdn: blog.demo.test
    check: {type: http, interval: 1s, timeout: 500ms, fall: 2, rise: 2, stale_after: 1h}
    pools: [{name: main, endpoints: [{name: b1, address: "127.0.0.13:80"}]}]
`
	configs <- eventstest.Config(t, next)
	// blog's results are decided as soon as they come; w1 stays down without a second append;
	// e1 goes down after one failure, the new fall.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		p.send("blog", "main", "b1", false)
		return len(history(t, srv)) > 2
	}, "blog's results to be decided")
	p.send("shop", "east", "e1", false)
	waitHistory(t, srv, "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.blog.main.b1:down", "pool.blog.main:down",
		"endpoint.shop.east.e1:down", "pool.shop.east:down")
}

func TestAnEndpointANewConfigurationAddsOrMovesIsHeldByTheOverridesInForce(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "d1", func(o *decider.Options) { o.Configs = configs })
	p := &prober{t: t, js: srv.JS, region: "local"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	p.send("shop", "east", "e1", true)
	p.send("shop", "east", "e1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up")
	ctx := context.Background()
	for _, o := range []events.Override{
		{App: "shop", Pool: "west", By: "alice@box", Reason: "region outage", Action: events.ActionForceDown},
		{App: "shop", Pool: "east", Endpoint: "e1", By: "bob@box", Reason: "deploy", Action: events.ActionDrain},
	} {
		if err := override.Set(ctx, srv.JS, o); err != nil {
			t.Fatal(err)
		}
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.east.e1:drained", "pool.shop.east:down")

	// The next configuration adds w2 to the pool forced down and moves e1, drained, to a new
	// address: both stay as the overrides say, however healthy their probes.
	next := strings.Replace(shopYAML, `endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}]`, 1)
	next = strings.Replace(next, "127.0.0.12:8081", "127.0.0.14:8081", 1)
	configs <- eventstest.Config(t, next)
	for range 2 {
		p.send("shop", "west", "w2", true)
		p.send("shop", "east", "e1", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.east.e1:up", "pool.shop.east:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.east.e1:drained", "pool.shop.east:down",
		"endpoint.shop.west.w2:down")
}

func TestAnEndpointANewConfigurationBringsBackUnderAPoolOverrideIsHeldByIt(t *testing.T) {
	srv := eventstest.Start(t)
	two := strings.Replace(shopYAML, `endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}]`, 1)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, two), "d1", func(o *decider.Options) { o.Configs = configs })
	p := &prober{t: t, js: srv.JS, region: "local"}
	for range 2 {
		p.send("shop", "west", "w1", true)
		p.send("shop", "west", "w2", true)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w2:up")

	// w2 leaves the configuration, recorded up; the pool is forced down; w2 comes back. The
	// version is stamped as CONFIG would store it, before the override: stamped on its arrival
	// instead, it could come after the override was stored, which then forced w2 down too.
	one := eventstest.Config(t, shopYAML)
	one.Stored = time.Now()
	configs <- one
	o := events.Override{App: "shop", Pool: "west", By: "alice@box", Reason: "region outage", Action: events.ActionForceDown}
	if err := override.Set(context.Background(), srv.JS, o); err != nil {
		t.Fatal(err)
	}
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w2:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down")
	configs <- eventstest.Config(t, two)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w2:up",
		"endpoint.shop.west.w1:down", "pool.shop.west:down", "endpoint.shop.west.w2:down")
}

func TestAnEndpointANewConfigurationAddsToADrilledPoolIsSeenDownWhileTheDrillLasts(t *testing.T) {
	srv := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	start(t, srv.JS, eventstest.Config(t, shopYAML), "d1", func(o *decider.Options) { o.Configs = configs })
	p := &prober{t: t, js: srv.JS, region: "local"}
	p.send("shop", "west", "w1", true)
	p.send("shop", "west", "w1", true)
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up")
	startDrill(t, srv, "d1", events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"})
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down")

	configs <- eventstest.Config(t, strings.Replace(shopYAML, `endpoints: [{name: w1, address: "127.0.0.11:8081"}]`,
		`endpoints: [{name: w1, address: "127.0.0.11:8081"}, {name: w2, address: "127.0.0.13:8081"}]`, 1))
	waitHistory(t, srv, "endpoint.shop.west.w1:up", "pool.shop.west:up", "endpoint.shop.west.w1:down", "pool.shop.west:down",
		"endpoint.shop.west.w2:down")
}

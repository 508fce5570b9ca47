package controller

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestARouteROUTESRefusesIsNotSentAgainEvery50msWhileOtherRoutesAreStored: ROUTES refuses one
// route for a reason of its own (bigger than the stream's max_msg_size), while it stores the
// others. The wait before a route that failed was sent again was one for all routes, brought
// back to 50 ms by any route's acknowledgement: while other routes were stored, the refused one
// was sent again every 50 ms, for ever. Each route now backs off on its own failures, and the
// line telling of them names it.
func TestARouteROUTESRefusesIsNotSentAgainEvery50msWhileOtherRoutesAreStored(t *testing.T) {
	var doc strings.Builder
	doc.WriteString(`zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:8081"}]}]
  - name: big
    fqdn: big.demo.test
    pools:
      - name: east
        region: us-east
        endpoints:
`)
	for i := range 40 {
		fmt.Fprintf(&doc, "          - {name: e%d, address: \"127.0.1.%d:8081\"}\n", i, 1+i)
	}
	doc.WriteString(`edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.22
    heartbeat: {interval: 100ms, fall: 3}
    apps: [{app: big, listen: "127.0.0.22:8080"}]
`)
	ns := eventstest.Start(t)
	ctx := context.Background()
	routes := ns.Stream(t, events.StreamRoutes).CachedInfo().Config
	routes.MaxMsgSize = 2048 // shop's route fits, big's does not
	if _, err := ns.JS.UpdateStream(ctx, routes); err != nil {
		t.Fatal(err)
	}
	shop, big := events.AppRouteSubject("edge-west", "shop"), events.AppRouteSubject("edge-east", "big")
	var attempts atomic.Int64
	sub, err := ns.Conn.Subscribe(big, func(*nats.Msg) { attempts.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := ns.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return Run(ctx, Options{JS: ns.JS, Config: eventstest.Config(t, doc.String()), Name: "controller-1",
			Ticks: make(chan time.Time), Log: zerolog.New(&logs)})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(history(t, ns, events.StreamRoutes, shop)) == 1 }, "edge-west's first route for shop")
	eventstest.Eventually(t, 5*time.Second, func() bool { return attempts.Load() > 0 }, "the controller tries to store edge-east's route for big")

	// w1 goes down and up again, one change at a time, each stored before the next: ROUTES
	// acknowledges edge-west's routes all through the window.
	// The routes are counted by their sequences: ROUTES keeps events.RoutesPerSubject of them.
	lastRoute := func() uint64 {
		m, err := ns.Stream(t, events.StreamRoutes).GetLastMsgForSubject(ctx, shop)
		if err != nil {
			return 0
		}
		return m.Sequence
	}
	from, start := attempts.Load(), time.Now()
	stored := 1
	for to := events.StatusDown; time.Since(start) < 2*time.Second; {
		before := lastRoute()
		typ := map[events.Status]string{events.StatusDown: events.TypeEndpointDown, events.StatusUp: events.TypeEndpointUp}[to]
		e, err := events.New(typ, "decider-test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: to, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, ns.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
		stored++
		eventstest.Eventually(t, 5*time.Second, func() bool { return lastRoute() > before },
			"edge-west's route for shop after w1 went %s", to)
		to = map[events.Status]events.Status{events.StatusDown: events.StatusUp, events.StatusUp: events.StatusDown}[to]
	}
	took, n := time.Since(start), attempts.Load()-from
	t.Logf("%d routes for shop stored and big's route sent %d times in %s", stored-1, n, took.Round(time.Millisecond))
	// Backing off from 50 ms to storeTimeout, it is sent about 5 times in 2 s; every 50 ms, 40.
	if n >= 15 {
		t.Errorf("edge-east's route for big sent %d times in %s while ROUTES stored edge-west's, want fewer than 15: it is sent again every %s",
			n, took.Round(time.Millisecond), firstRouteRetry)
	}
	const failed = "routes not published, retrying"
	var lines []string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, failed) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"edge":"edge-east","app":"big"`) {
		t.Errorf("lines telling routes were not published: %q; want one, naming edge-east's route for big", lines)
	}
}

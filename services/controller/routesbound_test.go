package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/controller"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAnAppsUnchangedRouteOutlivesOtherAppsChurnPastROUTESsByteBound: past its max_bytes ROUTES
// discards its oldest messages whatever their subject, so another app's route changing often
// pushed out the only copy of a route that had not changed since: an edge starting then had no
// route for that app, and served it from the configuration alone (every instance, the one the
// deciders took down included) until its route changed. Two controller replicas now store such a
// route again before ROUTES discards it, once per copy between them: ROUTES holds shop's route
// after cart's changed ten times over its bound, and an edge started afterwards serves shop from
// it, w2 alone.
func TestAnAppsUnchangedRouteOutlivesOtherAppsChurnPastROUTESsByteBound(t *testing.T) {
	w1, w2 := startApp(t, "w1", "127.0.0.1:0"), startApp(t, "w2", "127.0.0.1:0")
	listen := freeAddr(t, "127.0.0.1")
	doc := fmt.Sprintf(`zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: w1, address: %q}, {name: w2, address: %q}]}]
  - name: cart
    fqdn: cart.demo.test
    pools: [{name: west, region: us-west, endpoints: [{name: c1, address: "127.0.0.31:8081"}]}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.1
    apps: [{app: shop, listen: %q}, {app: cart, listen: "127.0.0.1:0"}]
`, w1.addr, w2.addr, listen)
	ns := eventstest.Start(t)
	ctx := context.Background()
	const maxBytes = 16 << 10
	rc := ns.Stream(t, events.StreamRoutes).CachedInfo().Config
	rc.MaxBytes, rc.MaxMsgSize = maxBytes, 4<<10
	if _, err := ns.JS.UpdateStream(ctx, rc); err != nil {
		t.Fatal(err)
	}
	transition := func(app, endpoint string, to events.Status) {
		t.Helper()
		typ := map[events.Status]string{events.StatusDown: events.TypeEndpointDown, events.StatusUp: events.TypeEndpointUp}[to]
		from := map[events.Status]events.Status{events.StatusDown: events.StatusUp, events.StatusUp: events.StatusDown}[to]
		e, err := events.New(typ, "decider-test", time.Now(), events.Transition{App: app, Pool: "west", Endpoint: endpoint, From: from, To: to, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(ctx, ns.JS, events.EndpointStateSubject(app, "west", endpoint), e); err != nil {
			t.Fatal(err)
		}
	}
	routes := ns.Stream(t, events.StreamRoutes)
	shop, cart := events.AppRouteSubject("edge-west", "shop"), events.AppRouteSubject("edge-west", "cart")
	last := func(subject string) (events.EdgeRoute, uint64) {
		var r events.EdgeRoute
		m, err := routes.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return r, 0
		}
		if e, err := events.Decode(m.Data); err != nil || e.Payload(&r) != nil {
			t.Fatalf("%s holds %q", subject, m.Data)
		}
		return r, m.Sequence
	}
	// Every copy of shop's route ROUTES stores, in order.
	var mu sync.Mutex
	var copies []events.EdgeRoute
	var seqs []uint64
	oc, err := routes.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{shop}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		var r events.EdgeRoute
		e, err := events.Decode(m.Data())
		md, _ := m.Metadata()
		if err != nil || e.Payload(&r) != nil || md == nil {
			t.Errorf("shop's route %q", m.Data())
			return
		}
		mu.Lock()
		defer mu.Unlock()
		copies, seqs = append(copies, r), append(seqs, md.Sequence.Stream)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)

	transition("shop", "w1", events.StatusDown)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	var stops []func()
	for _, name := range []string{"controller-1", "controller-2"} {
		stops = append(stops, eventstest.Run(t, name, func(ctx context.Context) error {
			return controller.Run(ctx, controller.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Name: name, Log: log})
		}))
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { _, seq := last(shop); return seq > 0 }, "shop's first route")

	// cart's endpoint flaps, one change stored after another, until ROUTES has taken ten times
	// its bound since shop's route was stored.
	_, first := last(shop)
	var churned uint64
	for to := events.StatusDown; churned < 10*maxBytes; {
		_, before := last(cart)
		transition("cart", "c1", to)
		eventstest.Eventually(t, 5*time.Second, func() bool { _, seq := last(cart); return seq > before }, "cart's route after c1 went %s", to)
		m, err := routes.GetLastMsgForSubject(ctx, cart)
		if err != nil {
			t.Fatal(err)
		}
		churned += uint64(len(m.Subject) + len(m.Header.Get(jetstream.MsgIDHeader)) + len(m.Data))
		to = map[events.Status]events.Status{events.StatusDown: events.StatusUp, events.StatusUp: events.StatusDown}[to]
	}
	info, err := routes.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq <= first {
		t.Fatalf("ROUTES still holds seq %d, shop's first route, from %d: the churn did not pass its bound", first, info.State.FirstSeq)
	}
	r, seq := last(shop)
	if seq == 0 || len(r.Route.Endpoints) != 2 || r.Route.Endpoints[0].Status != events.StatusDown {
		t.Errorf("shop's route in ROUTES after cart's churn: %+v at seq %d; want w1 down", r, seq)
	}

	mu.Lock()
	prev, refreshes := first, 0
	for i, c := range copies[1:] {
		if c.RefreshOf != prev {
			t.Errorf("copy %d of shop's route (seq %d) repeats seq %d; want %d, the one before it: each copy is stored again once", i+1, seqs[i+1], c.RefreshOf, prev)
		}
		prev = seqs[i+1]
		refreshes++
	}
	mu.Unlock()
	t.Logf("cart's route churned %d bytes through ROUTES (max_bytes %d): shop's stored again %d times", churned, maxBytes, refreshes)

	// A controller starting on a ROUTES that full cannot tell where the copies it reads stand:
	// it stores them again at once.
	for _, stop := range stops {
		stop()
	}
	_, before := last(shop)
	eventstest.Run(t, "controller-3", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Name: "controller-3", Log: log})
	})
	eventstest.Eventually(t, 5*time.Second, func() bool { r, seq := last(shop); return seq > before && r.RefreshOf == before },
		"a controller starting on a full ROUTES to store shop's route (seq %d) again", before)

	// An edge starting now reads shop's route and sends shop's requests to w2 alone.
	eventstest.Run(t, "edge", func(ctx context.Context) error {
		return proxy.Run(ctx, proxy.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Edge: "edge-west", Log: log})
	})
	client := &http.Client{Timeout: 2 * time.Second}
	get := func() string {
		resp, err := client.Get("http://" + listen + "/")
		if err != nil {
			return ""
		}
		_ = resp.Body.Close()
		return resp.Header.Get("Backend")
	}
	served := map[string]int{}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		clear(served)
		for range 20 {
			served[get()]++
		}
		return served["w2"] == 20
	}, "20 requests in a row for shop through an edge started after the churn to go to w2 alone (w1 is down); the last 20 went to %v", served)
}

package alert_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const drillDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
  - name: blog
    fqdn: blog.demo.test
    pools:
      - {name: main, endpoints: [{name: m1, address: "127.0.0.12:80"}]}
alerts:
  - name: drills
    on: [drill_result]
    webhooks: [{url: %q, secret_env: DETOUR_TEST_HOOK_SECRET}]
  - name: blog-drills
    on: [drill_result]
    apps: [blog]
    webhooks: [{url: %q}]
  - name: pages
    on: [pool_down]
    webhooks: [{url: %q}]
`

func drillEvent(t *testing.T, js jetstream.JetStream, id, typ string, data any) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "drill/ops", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js, events.DrillSubject(id), e); err != nil {
		t.Fatal(err)
	}
	return e
}

// drillEnds appends drill id of west-outage on shop, started and completed by ops: one
// drill_result to alert.
func drillEnds(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	drillEvent(t, js, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 1})
	drillEvent(t, js, id, events.TypeDrillScored, drill.Scorecard{Drill: id, Name: "west-outage", By: "ops", RolledBack: "completed by ops"})
}

func TestADrillThatEndsIsSentAsADrillResultToTheGroupsThatSubscribe(t *testing.T) {
	const secret = "drill-hook-secret"
	t.Setenv("DETOUR_TEST_HOOK_SECRET", secret)
	all, blog, pages := &receiver{fails: 1}, &receiver{}, &receiver{}
	var urls []any
	for _, rc := range []*receiver{all, blog, pages} {
		srv := serve(t, rc)
		urls = append(urls, `"`+srv.URL+`"`)
	}
	d := drillDoc
	for _, u := range urls {
		d = strings.Replace(d, "%q", u.(string), 1)
	}
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, d)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Backoff: 10 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	st := ns.Stream(t, events.StreamDrills)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Consumers == 1
	}, "the alert sender to follow DRILLS")

	// A drill of shop that scores: step 1 passes, step 2 fails.
	drillEvent(t, ns.JS, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 2})
	drillEvent(t, ns.JS, "d1", events.TypeDrillStepStarted, events.DrillStep{Index: 0, Step: "pool shop/west"})
	drillEvent(t, ns.JS, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "ops", Reason: "completed"})
	scored := drillEvent(t, ns.JS, "d1", events.TypeDrillScored, drill.Scorecard{Drill: "d1", Name: "west-outage", By: "ops",
		RolledBack: "completed by ops", Steps: []drill.StepScore{
			{Index: 0, Step: "pool shop/west", Pass: true, Reason: "switched in 120ms"},
			{Index: 1, Step: "endpoint shop/west/w1", Pass: false, Reason: "shop still answers 127.0.0.11 after 4s"}}})
	// A drill of blog whose runner is lost: the controller rolls it back, and no scorecard comes.
	drillEvent(t, ns.JS, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "blog-down", By: "ops", Apps: []string{"blog"}, Steps: 1})
	lost := drillEvent(t, ns.JS, "d2", events.TypeDrillRolledBack, events.DrillRolledBack{By: "controller-1", Reason: "runner_lost"})

	accepted := func(rc *receiver, n int) []alert.Payload {
		var out []alert.Payload
		eventstest.Eventually(t, 5*time.Second, func() bool {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return len(rc.accepted) >= n
		}, "%d deliveries", n)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, b := range rc.accepted {
			var p alert.Payload
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	got := accepted(all, 2)
	byID := map[string]alert.Payload{}
	for _, p := range got {
		if p.Kind != config.AlertDrillResult || p.Drill == nil {
			t.Fatalf("delivery %+v is not a drill_result", p)
		}
		byID[p.Drill.ID] = p
	}
	d1, d2 := byID["d1"], byID["d2"]
	if d1.Drill == nil || d1.EventID != scored.ID || d1.Drill.Pass || !d1.Drill.Scored || len(d1.Drill.Steps) != 2 ||
		!d1.Drill.Steps[0].Pass || d1.Drill.Steps[1].Pass || d1.Drill.Steps[1].Step != "endpoint shop/west/w1" {
		t.Errorf("d1 result = %+v, want a scored failure with step 1 PASS and step 2 FAIL", d1.Drill)
	}
	if want := "drill_result: drill west-outage (d1) FAIL: pool shop/west PASS; endpoint shop/west/w1 FAIL (shop still answers 127.0.0.11 after 4s); rolled back: completed by ops"; d1.Text != want {
		t.Errorf("d1 text %q, want %q", d1.Text, want)
	}
	if d2.Drill == nil || d2.EventID != lost.ID || d2.Drill.Pass || d2.Drill.Scored || d2.Drill.RolledBack != "runner_lost by controller-1" {
		t.Errorf("d2 result = %+v, want an unscored failure rolled back for runner_lost", d2.Drill)
	}
	all.mu.Lock()
	sig := all.headers[0].Get(alert.HeaderSignature)
	body := all.accepted[0]
	requests := all.requests
	all.mu.Unlock()
	if err := alert.Verify(secret, sig, body, time.Now(), 5*time.Minute); err != nil {
		t.Errorf("signature of a drill_result: %v", err)
	}
	if requests != 3 {
		t.Errorf("the receiver that failed once saw %d requests, want 3 (one retry)", requests)
	}

	// The group limited to blog hears of d2 only; the group on pool_down hears of neither.
	if b := accepted(blog, 1); b[0].Drill == nil || b[0].Drill.ID != "d2" {
		t.Errorf("the blog group got %+v, want d2 only", b[0])
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(stored(t, ns, "drills")) == 3 }, "three attempts of group drills on ALERTS")
	blog.mu.Lock()
	pages.mu.Lock()
	defer blog.mu.Unlock()
	defer pages.mu.Unlock()
	if blog.requests != 1 || pages.requests != 0 {
		t.Errorf("the blog group saw %d requests (want 1), the pool_down group %d (want 0)", blog.requests, pages.requests)
	}
}

func TestDrillResultsAreSentOnceTheDrillsStreamExistsWhenItDidNotAtStart(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	if err := ns.JS.DeleteStream(context.Background(), events.StreamDrills); err != nil {
		t.Fatal(err)
	}
	d := drillDoc
	for range 3 {
		d = strings.Replace(d, "%q", `"`+hook.URL+`"`, 1)
	}
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "x")
	cfg := eventstest.Config(t, d)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	st := ns.Stream(t, events.StreamDrills)
	eventstest.Eventually(t, 10*time.Second, func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Consumers == 1
	}, "the alert sender to follow DRILLS once it exists")
	drillEvent(t, ns.JS, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Apps: []string{"shop"}, Steps: 1})
	drillEvent(t, ns.JS, "d1", events.TypeDrillScored, drill.Scorecard{Drill: "d1", Pass: true})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.accepted) == 1 && strings.Contains(string(rc.accepted[0]), `"kind":"drill_result"`)
	}, "one drill_result delivered to the group on every app")
}

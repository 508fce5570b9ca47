package natsd_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// The controller's API lists the drills DRILLS holds and rolls one back with the controller's
// own permissions, as `detour drill rollback` does with the operator's, and lists them at once
// though the operator removed the last message of DRILLS (its API then asks its consumer
// whether anything is left to read).
func TestDeploymentIdentitiesTheControllersAPIListsAndRollsBackADrill(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	const doc = "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n    pools:\n      - {name: west, region: us-west, endpoints: [{name: w1, address: \"127.0.0.11:80\"}]}\n"
	op := d.as("operator")
	ctx := context.Background()
	if _, _, err := config.Apply(ctx, op.js, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.TypeDrillStarted, "drill/ops", time.Now(), events.DrillStarted{ID: "d1", Name: "west", By: "ops",
		Apps: []string{"shop"}, Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, op.js, events.DrillSubject("d1"), e); err != nil {
		t.Fatal(err)
	}
	forged, err := events.New(events.TypeDrillRenewed, "drill/ops", time.Now(), events.DrillRenewed{By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op.js, events.DrillSubject("d1"), forged)
	if err != nil {
		t.Fatal(err)
	}
	drills, err := op.js.Stream(ctx, events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	if err := drills.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	secret, err := api.AddToken(path, "ops", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	ctl := d.as("controller-1")
	srv, err := api.Listen(api.Options{JS: ctl.js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: toks,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api", srv.Run)
	for _, c := range []struct{ method, path string }{{"GET", "/v1/drills"}, {"POST", "/v1/drills/d1/rollback"}} {
		began := time.Now()
		if code, b := apiRequest(t, srv.Addr(), secret, c.method, c.path, ""); code != http.StatusOK || time.Since(began) > 2*time.Second {
			t.Errorf("%s %s as the controller: %d %s after %s", c.method, c.path, code, b, time.Since(began))
		}
	}
	if v := ctl.errors(); len(v) > 0 {
		t.Errorf("the controller's API ran into its permissions: %q", v)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/drill"
)

func (f *fixture) drillEvent(t *testing.T, id, typ string, data any) {
	t.Helper()
	e, err := events.New(typ, "drill/ops", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), f.ns.JS, events.DrillSubject(id), e); err != nil {
		t.Fatal(err)
	}
}

func TestTheDrillsEndpointsListDrillsAndRollOneBackWithAWriteToken(t *testing.T) {
	f := start(t)
	west := events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"}
	// d1 ended and was scored; d2 is in force at its first step.
	f.drillEvent(t, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "old", By: "ops", Apps: []string{"shop"}, Steps: 1})
	f.drillEvent(t, "d1", events.TypeDrillStepStarted, events.DrillStep{Index: 0, Step: "pool shop/west", Failures: []events.Failure{west}})
	f.drillEvent(t, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "ops", Reason: "completed"})
	f.drillEvent(t, "d1", events.TypeDrillScored, drill.Scorecard{Drill: "d1", Pass: true})
	f.drillEvent(t, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 2,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	f.drillEvent(t, "d2", events.TypeDrillStepStarted, events.DrillStep{Index: 0, Step: "pool shop/west", Failures: []events.Failure{west}})

	if code, _ := f.do(t, "GET", "/v1/drills", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/drills without a token: %d, want 401", code)
	}
	if code, _ := f.do(t, "POST", "/v1/drills/d2/rollback", "", ""); code != http.StatusUnauthorized {
		t.Errorf("rollback without a token: %d, want 401", code)
	}
	if code, body := f.do(t, "POST", "/v1/drills/d2/rollback", f.read, ""); code != http.StatusForbidden {
		t.Errorf("rollback with a read token: %d %s, want 403", code, body)
	}

	list := func() []api.Drill {
		t.Helper()
		code, body := f.do(t, "GET", "/v1/drills", f.read, "")
		var out struct{ Drills []api.Drill }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("GET /v1/drills: %d %s", code, body)
		}
		return out.Drills
	}
	ds := list()
	if len(ds) != 2 || ds[0].ID != "d2" || ds[1].ID != "d1" {
		t.Fatalf("drills %+v, want d2 (in force) then d1", ds)
	}
	if d := ds[0]; d.State != api.DrillInForce || d.Step != "pool shop/west" || len(d.Failures) != 1 || d.Failures[0] != west || d.Pass != nil || d.Name != "west-outage" {
		t.Errorf("d2 = %+v, want in force at pool shop/west", d)
	}
	if d := ds[1]; d.State != api.DrillScored || d.Pass == nil || !*d.Pass || d.RolledBack != "completed by ops" || len(d.Failures) != 0 {
		t.Errorf("d1 = %+v, want scored, passed, rolled back on completion", d)
	}

	if code, body := f.do(t, "POST", "/v1/drills/d2/rollback", f.write, ""); code != http.StatusOK || !strings.Contains(body, "requested by api/ops") {
		t.Fatalf("rollback with a write token: %d %s, want 200", code, body)
	}
	v, err := drill.ReadDrills(context.Background(), f.ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Ended("d2") || len(v.Active()) != 0 {
		t.Errorf("after the rollback DRILLS still has %d drills in force, d2 ended: %v", len(v.Active()), v.Ended("d2"))
	}
	if d := list()[0]; d.ID != "d2" || d.State != api.DrillRolledBack || d.RolledBack != "requested by api/ops" || len(d.Failures) != 0 {
		t.Errorf("d2 after rollback = %+v", d)
	}
	for path, want := range map[string]int{
		"/v1/drills/d2/rollback":     http.StatusConflict,
		"/v1/drills/nope/rollback":   http.StatusNotFound,
		"/v1/drills/a.b.c/rollback":  http.StatusBadRequest,
		"/v1/drills/%2A%3E/rollback": http.StatusBadRequest,
	} {
		if code, body := f.do(t, "POST", path, f.write, ""); code != want {
			t.Errorf("POST %s: %d %s, want %d", path, code, body, want)
		}
	}
}

// Two operators rolling one drill back at once: one rolls it back, the other is told it already
// rolled back (409), and DRILLS holds one rollback.
func TestTwoRollbacksOfOneDrillAtOnceRollItBackOnce(t *testing.T) {
	f := start(t)
	west := events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"}
	for round := range 20 {
		id := fmt.Sprintf("r%d", round)
		f.drillEvent(t, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 1,
			RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
		f.drillEvent(t, id, events.TypeDrillStepStarted, events.DrillStep{Index: 0, Step: "pool shop/west", Failures: []events.Failure{west}})
		codes := make(chan int, 2)
		for range 2 {
			go func() {
				req, _ := http.NewRequest("POST", f.url+"/v1/drills/"+id+"/rollback", nil)
				req.Header.Set("Authorization", "Bearer "+f.write)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		a, b := <-codes, <-codes
		if min(a, b) != http.StatusOK || max(a, b) != http.StatusConflict {
			t.Fatalf("round %d: two rollbacks at once answered %d and %d, want 200 and 409", round, a, b)
		}
	}
}

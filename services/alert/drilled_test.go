package alert_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/decide"
	"github.com/rs/zerolog"
)

// TestADrillsPoolDownAndFailoverAreToldAsTheDrillsAndAnOutageIsNot runs a drill that fails pool
// west, as the decider records it (the endpoint's transitions carry the drill, the pool's names
// the endpoint's as its cause and says nothing of the drill), then a real outage of the same
// pool: an on-call engineer paged must tell the drill's alerts from the outage's, by the text
// and by drill_id.
func TestADrillsPoolDownAndFailoverAreToldAsTheDrillsAndAnOutageIsNot(t *testing.T) {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s")
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	w1, west := events.EndpointStateSubject("shop", "west", "w1"), events.PoolStateSubject("shop", "west")
	appendCaused := func(subject, typ, cause string, tr events.Transition) events.Envelope {
		t.Helper()
		e, err := events.New(typ, "decider-1", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		e.Cause = cause
		if _, err := events.Publish(context.Background(), ns.JS, subject, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	goes := func(to events.Status, drill, reason string) {
		t.Helper()
		from, ep, pool := events.StatusUp, events.TypeEndpointDown, events.TypePoolDown
		if to == events.StatusUp {
			from, ep, pool = events.StatusDown, events.TypeEndpointUp, events.TypePoolUp
		}
		e := appendCaused(w1, ep, "", events.Transition{App: "shop", Pool: "west", Endpoint: "w1", From: from, To: to, Reason: reason, Drill: drill})
		appendCaused(west, pool, e.ID, events.Transition{App: "shop", Pool: "west", From: from, To: to,
			Reason: "w1 " + string(to) + ": 0 of 1 endpoints serving, need 1"})
	}
	// The drill: w1's failure moves shop's answer to east (failover), then west goes down
	// (pool_down); its rollback brings the answer back (failover; west up is a transition only).
	goes(events.StatusDown, "lose-west-1", "drill lose-west-1: simulated failure of pool shop/west")
	goes(events.StatusUp, "", "drill ended; 1 of 1 voting regions see it up (quorum 0.5)")
	// A drill's failure recorded before transitions carried the drill tells it by its wording.
	goes(events.StatusDown, "", "drill lose-west-1: simulated failure of pool shop/west")
	goes(events.StatusUp, "", "drill ended; 1 of 1 voting regions see it up (quorum 0.5)")
	const drillAlerts = 6
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == drillAlerts },
		"%d alerts delivered for the drill; got %d", drillAlerts, rc.delivered())
	// The outage: the same pool, its probes failing.
	goes(events.StatusDown, "", "3 consecutive failures")
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == drillAlerts+2 },
		"2 alerts delivered for the outage after the drill's %d; got %d in all", drillAlerts, rc.delivered())

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, body := range rc.accepted {
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		text, _ := p["text"].(string)
		if i < drillAlerts {
			if p["drill_id"] != "lose-west-1" || !strings.HasPrefix(text, "[drill lose-west-1] ") {
				t.Errorf("drill alert %d (%s) has drill_id %v and text %q, want drill_id lose-west-1 and the text to begin [drill lose-west-1]",
					i, p["kind"], p["drill_id"], text)
			}
			continue
		}
		if _, ok := p["drill_id"]; ok || strings.Contains(text, "drill") {
			t.Errorf("outage alert %d (%s) is told as a drill's: %s", i, p["kind"], body)
		}
	}
}

// outlived runs a sender for doc's groups, webhook rc, on a JetStream of its own, and returns a
// func that appends a transition on subject caused by the event cause (may be "").
func outlived(t *testing.T, doc string, rc *receiver) func(subject, typ, cause string, tr events.Transition) events.Envelope {
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "s")
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: cfg, Name: "controller-1", Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")
	return func(subject, typ, cause string, tr events.Transition) events.Envelope {
		t.Helper()
		e, err := events.New(typ, "decider-1", time.Now(), tr)
		if err != nil {
			t.Fatal(err)
		}
		e.Cause = cause
		if _, err := events.Publish(context.Background(), ns.JS, subject, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
}

// toldAsOutage waits until rc accepted a pool_down without [drill] and drill_id.
func (rc *receiver) toldAsOutage(t *testing.T, what string) {
	t.Helper()
	var texts []string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		texts = texts[:0]
		for _, body := range rc.accepted {
			var p map[string]any
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			text, _ := p["text"].(string)
			texts = append(texts, text)
			if _, drilled := p["drill_id"]; !drilled && p["kind"] == "pool_down" && !strings.Contains(text, "[drill") {
				return true
			}
		}
		return false
	}, "%s: no pool_down told as an outage's among %q", what, &texts)
}

var (
	w1   = events.EndpointStateSubject("shop", "west", "w1")
	west = events.PoolStateSubject("shop", "west")
)

// TestAnOutageADrillOutlivedIsToldAsAnOutageWhenTheDrillEnds: a drill fails pool west, and w1
// fails for real meanwhile; when the drill ends the decider re-states w1 and west down to down,
// without the drill's mark (decide.DrillOutlived). The pool's re-statement pages as an outage's
// pool_down: without [drill] and drill_id, though the pool's status did not change.
func TestAnOutageADrillOutlivedIsToldAsAnOutageWhenTheDrillEnds(t *testing.T) {
	rc := &receiver{}
	appendCaused := outlived(t, doc, rc)
	goes := func(from events.Status, drill, reason string) {
		t.Helper()
		e := appendCaused(w1, events.TypeEndpointDown, "", events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
			From: from, To: events.StatusDown, Reason: reason, Drill: drill})
		appendCaused(west, events.TypePoolDown, e.ID, events.Transition{App: "shop", Pool: "west", From: from, To: events.StatusDown,
			Reason: "w1 down: 0 of 1 endpoints serving, need 1"})
	}
	goes(events.StatusUp, "lose-west-1", "drill lose-west-1: simulated failure of pool shop/west")
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 2 },
		"the drill's failover and pool_down delivered; got %d", rc.delivered())
	goes(events.StatusDown, "", decide.DrillOutlived+": eu: 3 consecutive failures; 0 of 1 voting regions see it up (quorum 0.5)")
	eventstest.Eventually(t, 10*time.Second, func() bool { return rc.delivered() == 3 },
		"the outage's pool_down delivered after the drill's 2 alerts; got %d in all", rc.delivered())
	rc.toldAsOutage(t, "w1 re-stated down")
}

// TestAPoolDownADrillCausedIsToldAsAnOutageWhenAnotherEndpointKeepsItDown: west needs w1 and
// w2; a drill fails w1, which takes west down, and w2 fails for real meanwhile. The drill ends:
// w1 comes up (drill ended, the drill's), and the decider re-states west down to down, caused by
// that up: it pages as an outage's pool_down, not as the drill's.
func TestAPoolDownADrillCausedIsToldAsAnOutageWhenAnotherEndpointKeepsItDown(t *testing.T) {
	rc := &receiver{}
	appendCaused := outlived(t, strings.Replace(doc, `{name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}`,
		`{name: west, min_available: 2, endpoints: [{name: w1, address: "127.0.0.11:80"}, {name: w2, address: "127.0.0.13:80"}]}`, 1), rc)
	tr := func(endpoint string, from, to events.Status, reason, drill string) events.Transition {
		return events.Transition{App: "shop", Pool: "west", Endpoint: endpoint, From: from, To: to, Reason: reason, Drill: drill}
	}
	e := appendCaused(w1, events.TypeEndpointDown, "", tr("w1", events.StatusUp, events.StatusDown, "drill d1: simulated failure of endpoint shop/west/w1", "d1"))
	appendCaused(west, events.TypePoolDown, e.ID, tr("", events.StatusUp, events.StatusDown, "w1 down: 1 of 2 endpoints serving, need 2", ""))
	appendCaused(events.EndpointStateSubject("shop", "west", "w2"), events.TypeEndpointDown, "",
		tr("w2", events.StatusUp, events.StatusDown, "eu: 3 consecutive failures (fall 3); 0 of 1 voting regions see it up (quorum 0.5)", ""))
	e = appendCaused(w1, events.TypeEndpointUp, "", tr("w1", events.StatusDown, events.StatusUp, "drill ended; 1 of 1 voting regions see it up (quorum 0.5)", ""))
	appendCaused(west, events.TypePoolDown, e.ID, tr("", events.StatusDown, events.StatusDown, "w1 up: 1 of 2 endpoints serving, need 2", ""))
	rc.toldAsOutage(t, "west re-stated down")
}

// TestADrillsPoolDownStoredAfterItsEndpointCameBackIsStillTheDrills: a drill fails pool west and
// is rolled back at once; the replica that took w1 down retries west's down (its first append
// lost) after another replica brought w1 up at the drill's end, so STATE holds w1's down, w1's
// up, then west's down caused by w1's down, then west's up. West's down carries the drill, as
// the decider marks a pool's down a drill's failure caused: its pool_down is the drill's, told
// with [drill] and drill_id. Before, it was told by its cause alone, which w1's up had replaced,
// and it paged as an outage's.
func TestADrillsPoolDownStoredAfterItsEndpointCameBackIsStillTheDrills(t *testing.T) {
	rc := &receiver{}
	appendCaused := outlived(t, doc, rc)
	tr := func(endpoint string, from, to events.Status, reason, drill string) events.Transition {
		return events.Transition{App: "shop", Pool: "west", Endpoint: endpoint, From: from, To: to, Reason: reason, Drill: drill}
	}
	down := appendCaused(w1, events.TypeEndpointDown, "", tr("w1", events.StatusUp, events.StatusDown, "drill d1: simulated failure of pool shop/west", "d1"))
	up := appendCaused(w1, events.TypeEndpointUp, "", tr("w1", events.StatusDown, events.StatusUp, "drill ended; 1 of 1 voting regions see it up (quorum 0.5)", ""))
	appendCaused(west, events.TypePoolDown, down.ID, tr("", events.StatusUp, events.StatusDown, "w1 down: 0 of 1 endpoints serving, need 1", "d1"))
	appendCaused(west, events.TypePoolUp, up.ID, tr("", events.StatusDown, events.StatusUp, "w1 up: 1 of 1 endpoints serving, need 1", ""))
	var got []string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		got = got[:0]
		for _, body := range rc.accepted {
			var p map[string]any
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			got = append(got, string(body))
			if p["kind"] == "pool_down" {
				text, _ := p["text"].(string)
				if p["drill_id"] != "d1" || !strings.HasPrefix(text, "[drill d1] ") {
					t.Fatalf("west's down by the drill is told as %s: want drill_id d1 and the text to begin [drill d1]", body)
				}
				return true
			}
		}
		return false
	}, "no pool_down delivered for west's down among %q", &got)
}

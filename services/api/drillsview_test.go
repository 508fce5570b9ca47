package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drillReads returns a counter of the requests that read DRILLS message by message (direct gets,
// by sequence or by subject, and message gets), as the server passes them on, made while do runs.
func drillReads(t *testing.T, url string) func(do func()) int {
	t.Helper()
	const marker = "test.drill-reads.marker"
	nc := eventstest.Connect(t, url)
	seen := make(chan *nats.Msg, 1<<16)
	for _, subject := range []string{"$JS.API.DIRECT.GET.DRILLS", "$JS.API.DIRECT.GET.DRILLS.>", "$JS.API.STREAM.MSG.GET.DRILLS", marker} {
		if _, err := nc.ChanSubscribe(subject, seen); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func(do func()) int {
		t.Helper()
		do()
		// The server passed the requests on before it answered them, so before the marker.
		if err := nc.Publish(marker, nil); err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			select {
			case m := <-seen:
				if m.Subject == marker {
					return n
				}
				n++
			case <-time.After(10 * time.Second):
				t.Fatal("the marker did not come back")
			}
		}
	}
}

// renewals stores n renewals of drill id, as its runner does every second.
func (f *fixture) renewals(t *testing.T, id string, n int) {
	t.Helper()
	for i := range n {
		e, err := events.New(events.TypeDrillRenewed, "drill/ops", time.Now(), events.DrillRenewed{By: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(events.DrillSubject(id))
		m.Data = e.Encode()
		if _, err := f.ns.JS.PublishMsgAsync(m, jetstream.WithMsgID(e.ID)); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
	}
	select {
	case <-f.ns.JS.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("renewals not stored")
	}
}

func (f *fixture) drills(t *testing.T) []api.Drill {
	t.Helper()
	code, body := f.do(t, "GET", "/v1/drills", f.read, "")
	var out struct{ Drills []api.Drill }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("GET /v1/drills: %d %s", code, body)
	}
	return out.Drills
}

func ids(ds []api.Drill) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID+":"+d.State)
	}
	return out
}

// A drill that ran long left thousands of renewals in DRILLS: listing the drills, or rolling one
// back, reads none of them, and costs the same however long DRILLS's history is.
func TestListingAndRollingBackDrillsReadsNoMessageOfDRILLSHoweverLongItsHistory(t *testing.T) {
	f := start(t)
	reads := drillReads(t, f.ns.URL)
	f.drillEvent(t, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "long", By: "ops", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	f.renewals(t, "d1", 3000)
	f.drillEvent(t, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "short", By: "ops", Apps: []string{"web"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})

	for range 2 {
		var ds []api.Drill
		if n := reads(func() { ds = f.drills(t) }); n > 0 {
			t.Errorf("GET /v1/drills read %d messages of DRILLS one by one, want none", n)
		}
		if got := ids(ds); len(got) != 2 || got[0] != "d2:in_force" || got[1] != "d1:in_force" {
			t.Fatalf("drills %v, want d2 then d1 in force", got)
		}
	}
	var code int
	var body string
	// The rollback reads the drill's last event (at most twice: once more after a conflict).
	if n := reads(func() { code, body = f.do(t, "POST", "/v1/drills/d1/rollback", f.write, "") }); n > 2 {
		t.Errorf("rolling d1 back read %d messages of DRILLS one by one, want its last event only", n)
	}
	if code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	if got := ids(f.drills(t)); len(got) != 2 || got[0] != "d2:in_force" || got[1] != "d1:rolled_back" {
		t.Errorf("drills after the rollback %v, want d2 in force, d1 rolled back", got)
	}
}

// The API follows DRILLS: a drill started after the API started is listed as soon as DRILLS
// stored its start, and its rollback through the API finds it.
func TestADrillStartedAfterTheAPIStartedIsListedAndRolledBack(t *testing.T) {
	f := start(t)
	if got := ids(f.drills(t)); len(got) != 0 {
		t.Fatalf("drills %v before any ran", got)
	}
	f.drillEvent(t, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "late", By: "ops", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if got := ids(f.drills(t)); len(got) != 1 || got[0] != "d1:in_force" {
		t.Fatalf("drills %v, want d1 in force", got)
	}
	if code, body := f.do(t, "POST", "/v1/drills/d1/rollback", f.write, ""); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	if got := ids(f.drills(t)); len(got) != 1 || got[0] != "d1:rolled_back" {
		t.Errorf("drills %v, want d1 rolled back", got)
	}
}

// DRILLS is deleted and created again, its sequences starting over at 1: the API lists the new
// stream's drills only, though the new one's first event has a sequence the API folded before.
func TestTheDrillsOfADRILLSStreamCreatedAgainAreFoldedFromItsFirstMessage(t *testing.T) {
	f := start(t)
	for _, id := range []string{"old1", "old2"} {
		f.drillEvent(t, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: "old", By: "ops", Apps: []string{"shop"}, Steps: 1,
			RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	}
	if got := ids(f.drills(t)); len(got) != 2 {
		t.Fatalf("drills %v, want old1 and old2", got)
	}
	ctx := context.Background()
	if err := f.ns.JS.DeleteStream(ctx, events.StreamDrills); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, f.ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	f.drillEvent(t, "new", events.TypeDrillStarted, events.DrillStarted{ID: "new", Name: "new", By: "ops", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if got := ids(f.drills(t)); len(got) != 1 || got[0] != "new:in_force" {
		t.Fatalf("drills %v, want the new stream's drill only", got)
	}
	if code, body := f.do(t, "POST", "/v1/drills/old1/rollback", f.write, ""); code != http.StatusNotFound {
		t.Errorf("rollback of a drill of the deleted stream: %d %s, want 404", code, body)
	}
}

package drill_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drillReads counts the requests that read DRILLS message by message (direct gets by sequence
// or by subject, message gets), as the server passes them on.
type drillReads struct {
	t      *testing.T
	nc     *nats.Conn
	n      atomic.Int64
	marker chan struct{}
}

const drillReadsMarker = "test.drill-reads.marker"

// countDrillReads counts the reads of DRILLS through the server at url; onRead, when set, is
// called with the subject of each one, one at a time.
func countDrillReads(t *testing.T, url string, onRead func(subject string)) *drillReads {
	t.Helper()
	r := &drillReads{t: t, nc: eventstest.Connect(t, url), marker: make(chan struct{}, 1)}
	seen := make(chan *nats.Msg, 1<<16)
	for _, subject := range []string{"$JS.API.DIRECT.GET.DRILLS", "$JS.API.DIRECT.GET.DRILLS.>", "$JS.API.STREAM.MSG.GET.DRILLS", drillReadsMarker} {
		if _, err := r.nc.ChanSubscribe(subject, seen); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case m := <-seen:
				if m.Subject == drillReadsMarker {
					r.marker <- struct{}{}
					continue
				}
				if r.n.Add(1); onRead != nil {
					onRead(m.Subject)
				}
			case <-done:
				return
			}
		}
	}()
	return r
}

// during returns how many reads of DRILLS the server passed on while do ran.
func (r *drillReads) during(do func()) int {
	r.t.Helper()
	before := r.n.Load()
	do()
	// The server passed the requests on before it answered them, so before the marker.
	if err := r.nc.Publish(drillReadsMarker, nil); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-r.marker:
	case <-time.After(10 * time.Second):
		r.t.Fatal("the marker did not come back")
	}
	return int(r.n.Load() - before)
}

// storeDrillEvent stores one event of drill id and returns its sequence.
func storeDrillEvent(t *testing.T, js jetstream.JetStream, id, typ string, data any) uint64 {
	t.Helper()
	e, err := events.New(typ, "drill/ops", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(context.Background(), js, events.DrillSubject(id), e)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// A drill ran for a long while, its runner deleting each renewal once the next was stored:
// reading DRILLS (as `detour drill plan`, `run` and `rollback` do) asks for the messages it holds,
// not once more for every renewal deleted, which would cost a request a second of every drill
// ever run.
func TestReadingDRILLSAsksForTheMessagesItHoldsNotForEachRenewalDeleted(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	st := ns.Stream(t, events.StreamDrills)
	storeDrillEvent(t, ns.JS, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "long", By: "ops", Apps: []string{"shop"},
		Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 3000})
	var prev uint64
	for range 500 {
		seq := storeDrillEvent(t, ns.JS, "d1", events.TypeDrillRenewed, events.DrillRenewed{By: "ops"})
		if prev != 0 {
			if err := st.DeleteMsg(ctx, prev); err != nil {
				t.Fatal(err)
			}
		}
		prev = seq
	}
	storeDrillEvent(t, ns.JS, "d1", events.TypeDrillRolledBack, events.DrillRolledBack{By: "ops", Reason: "completed"})
	storeDrillEvent(t, ns.JS, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "now", By: "ops", Apps: []string{"www"},
		Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 3000})

	reads := countDrillReads(t, ns.URL, nil)
	var v *drill.View
	var err error
	n := reads.during(func() { v, err = drill.ReadDrills(ctx, ns.JS) })
	if err != nil {
		t.Fatal(err)
	}
	if !v.Ended("d1") || v.Drill("d2") == nil {
		t.Errorf("d1 ended %t, d2 in force %t; want both", v.Ended("d1"), v.Drill("d2") != nil)
	}
	// The start, the last renewal and the rollback of d1, the start of d2, and the answer that
	// nothing follows.
	if n > 5 {
		t.Errorf("reading DRILLS, which holds 4 messages, took %d reads", n)
	}
}

// `detour drill rollback` of a drill whose runner renews while the rollback reads DRILLS: a
// renewal stored between reading the drill's last event and appending after it makes the append
// conflict, and the rollback reads again. It reads only what was stored since, and is recorded,
// however long reading the whole of DRILLS takes against the runner's renewals (here, a renewal
// 100 reads after each look at the drill's last event; a renewal a second with reads a
// millisecond apart).
func TestARollbackIsRecordedWhileTheRunnerRenewsFasterThanDRILLSCanBeReadWhole(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := context.Background()
	storeDrillEvent(t, ns.JS, "d1", events.TypeDrillStarted, events.DrillStarted{ID: "d1", Name: "long", By: "ops", Apps: []string{"shop"},
		Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 3000})
	// Renewals an earlier version's runner left, and other drills' history.
	for i := range 3000 {
		if i%2 == 0 {
			storeDrillEvent(t, ns.JS, "d1", events.TypeDrillRenewed, events.DrillRenewed{By: "ops"})
		} else {
			id := fmt.Sprintf("old%d", i)
			storeDrillEvent(t, ns.JS, id, events.TypeDrillStarted, events.DrillStarted{ID: id, Name: "old", By: "ops", Apps: []string{"www"}, Steps: 1})
		}
	}
	renewals, sinceLast := 0, -1
	countDrillReads(t, ns.URL, func(subject string) {
		if subject == "$JS.API.DIRECT.GET.DRILLS."+events.DrillSubject("d1") {
			sinceLast = 0
			return
		}
		if sinceLast++; sinceLast == 100 {
			e, err := events.New(events.TypeDrillRenewed, "drill/ops", time.Now(), events.DrillRenewed{By: "ops"})
			if err == nil {
				_, err = events.Publish(ctx, ns.JS, events.DrillSubject("d1"), e)
			}
			if err != nil {
				t.Errorf("renewal: %v", err)
			}
			renewals++
		}
	})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := drill.Rollback(rctx, ns.JS, "d1", "ops", nil); err != nil {
		t.Fatalf("rollback while the runner renewed %d times: %v", renewals, err)
	}
	e, _, _, err := events.Last(ctx, ns.Stream(t, events.StreamDrills), events.DrillSubject("d1"))
	if err != nil || e.Type != events.TypeDrillRolledBack {
		t.Fatalf("d1's last event is %s (%v), want its rollback", e.Type, err)
	}
}

package drill_test

import (
	"context"
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
// called with the count at each one.
func countDrillReads(t *testing.T, url string, onRead func(n int64)) *drillReads {
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
				if n := r.n.Add(1); onRead != nil {
					onRead(n)
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

package decider_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestTwoReplicasInAStormNeverFlapAPool: two deciders fold a region of 5,000 endpoints failing
// at once, 500 results to a message as the probers batch them, so that every result of a
// message is stored at one instant. Each pool goes down once: no replica that has folded fewer
// of a message's results than the other appends the pool up again between two downs (a false
// answer during the failover).
func TestTwoReplicasInAStormNeverFlapAPool(t *testing.T) {
	const apps = 5
	srv := eventstest.Start(t)
	c := eventstest.Config(t, regionYAML(apps))
	start(t, srv.JS, c, "decider/a")
	start(t, srv.JS, c, "decider/b")
	n := apps*1000 + apps*10 // the endpoints' and the pools' subjects
	ctx := context.Background()
	st := srv.Stream(t, events.StreamState)
	// dbg describes every pool event of the last read, for the failure message.
	var dbg map[string][]string
	// read reads STATE and returns the last status of every subject, and every pool's statuses
	// in order.
	read := func() (map[string]events.Status, map[string][]events.Status) {
		dbg = map[string][]string{}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last, pools := map[string]events.Status{}, map[string][]events.Status{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			e, err := events.Decode(m.Data)
			if err != nil {
				t.Fatalf("STATE seq %d: %v", seq, err)
			}
			s, _ := events.TransitionStatus(e.Type)
			last[m.Subject] = s
			if strings.HasPrefix(m.Subject, "detour.state.pool.") {
				pools[m.Subject] = append(pools[m.Subject], s)
				var tr events.Transition
				_ = e.Payload(&tr)
				dbg[m.Subject] = append(dbg[m.Subject], fmt.Sprintf("seq %d %s by %s at %s cause %s reason %s", seq, s, e.Source, e.Time.Format("15:04:05.000000"), e.Cause[:8], tr.Reason))
			}
		}
		return last, pools
	}
	all := func(want events.Status) func() bool {
		return func() bool {
			last, _ := read()
			if len(last) < n {
				return false
			}
			for _, s := range last {
				if s != want {
					return false
				}
			}
			return true
		}
	}
	publishRegion(t, srv.JS, apps, true)
	eventstest.Eventually(t, 60*time.Second, all(events.StatusUp), "every endpoint and pool recorded up")
	publishRegion(t, srv.JS, apps, false)
	eventstest.Eventually(t, 60*time.Second, all(events.StatusDown), "every endpoint and pool recorded down")
	_, pools := read()
	flaps := 0
	for subject, ss := range pools {
		if len(ss) != 2 {
			flaps++
			if flaps <= 5 {
				t.Errorf("%s went %v, want [up down]: %q", subject, ss, dbg[subject])
			}
		}
	}
	if flaps > 5 {
		t.Errorf("and %d pools more", flaps-5)
	}
}

package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAControllerRestartedWhileAReplicaHangsRollsBackALapsedDrillSoon: controllers are
// restarted (a rolling restart) while one of three JetStream nodes hangs, the node that holds
// the DRILLS consumer each one's last run left, and a drill whose runner dies at once (a lease of
// 100 ms, never renewed) starts as each starts. Its DRILLS follower, with nothing to read by
// while it had no consumer, first waited for the hung node to say whether that consumer was in
// use and to delete it (0.25 s and 1 s), then for a creation JetStream may place on that node
// again (2 s): the drill's failures stayed in force 1.25 s or more past its lease. It reads
// DRILLS by direct gets once it has gone 250 ms without a consumer, as its STATE follower does:
// each drill is rolled back within 0.8 s of its lease running out.
func TestAControllerRestartedWhileAReplicaHangsRollsBackALapsedDrillSoon(t *testing.T) {
	const (
		restarted = 3
		lease     = 100 * time.Millisecond
	)
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamState, events.StreamDrills, events.StreamRoutes)
	url := c.URLs[(hung+1)%len(c.Servers)]
	_, js := eventstest.ConnectJS(t, url)
	cfg := eventstest.Config(t, edgesDoc)
	drills, err := js.Stream(context.Background(), events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	// stored returns the message DRILLS stored at seq, or the last one of the drill id when seq
	// is 0; nil when its leader does not answer within a second.
	stored := func(id string, seq uint64) *jetstream.RawStreamMsg {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var (
			m   *jetstream.RawStreamMsg
			err error
		)
		if seq > 0 {
			m, err = drills.GetMsg(ctx, seq)
		} else {
			m, err = drills.GetLastMsgForSubject(ctx, events.DrillSubject(id))
		}
		if err != nil {
			return nil
		}
		return m
	}
	// run starts a controller connected as user, as the role connects (its replies under its
	// own inbox, its consumers named for it).
	run := func(user string) func() {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		return eventstest.Run(t, "controller "+user, func(ctx context.Context) error {
			return Run(ctx, Options{JS: js, Config: cfg, Name: user, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		})
	}
	// Controllers whose DRILLS consumers JetStream placed on the node about to hang, left there.
	users := c.LeftOn(t, hung, restarted, drills, "controller", "", run)
	c.DirectGets(t, events.StreamState)
	c.DirectGets(t, events.StreamDrills)
	c.Silence(hung)

	var latest time.Duration
	for i, user := range users {
		id := fmt.Sprintf("d%d", i)
		stop := run(user)
		e, err := events.New(events.TypeDrillStarted, "drill/tester", time.Now(), events.DrillStarted{ID: id, Name: id, By: "tester",
			RollbackAt: time.Now().Add(time.Hour), LeaseMS: lease.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(context.Background(), js, events.DrillSubject(id), e)
		if err != nil {
			t.Fatal(err)
		}
		var started, last *jetstream.RawStreamMsg
		eventstest.Eventually(t, 15*time.Second, func() bool {
			if started == nil {
				started = stored(id, ack.Sequence)
			}
			last = stored(id, 0)
			if started == nil || last == nil {
				return false
			}
			rb, err := events.Decode(last.Data)
			return err == nil && rb.Type == events.TypeDrillRolledBack
		}, "drill %s rolled back by controller %s with n%d hung", id, user, hung)
		stop()
		late := last.Time.Sub(started.Time) - lease
		t.Logf("%s: drill %s rolled back %s after its lease ran out", user, id, late.Round(time.Millisecond))
		latest = max(latest, late)
	}
	if limit := 800 * time.Millisecond; latest > limit {
		t.Errorf("the latest of %d controllers restarted with n%d hung rolled back a drill %s after its lease ran out, want within %s",
			len(users), hung, latest.Round(time.Millisecond), limit)
	}
}

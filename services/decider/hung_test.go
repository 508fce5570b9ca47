package decider_test

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/decider"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestADeciderRestartedWhileAReplicaHangsRecordsAFailoverSoon: deciders are restarted (a rolling
// restart) while one of three JetStream nodes hangs (leading neither a stream they read nor the
// cluster's metadata), the node that holds the PROBES consumer each one's last run left, and the
// results that take an endpoint down (or up) are published as each starts. A decider goes live
// only once PROBES has caught up, and its PROBES reader, with nothing to read by while it has no
// consumer, first waited for the hung node to say whether that consumer was in use and to delete
// it (0.25 s and 1 s): it went live, and recorded the change, 1.3 s or more after its start (a
// consumer created anew within 3 s of the hang lands on the hung node one time in three, and waits
// 2.5 s). It reads PROBES by direct gets once it has gone 250 ms without a consumer, as its STATE
// reader does: each goes live, and records the change, within 0.8 s.
func TestADeciderRestartedWhileAReplicaHangsRecordsAFailoverSoon(t *testing.T) {
	const restarted = 3
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamState, events.StreamProbes, events.StreamDrills)
	url := c.URLs[(hung+1)%len(c.Servers)]
	_, js := eventstest.ConnectJS(t, url)
	cfg := eventstest.Config(t, shopYAML)
	probes, err := js.Stream(context.Background(), events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	// last reads STATE's leader, which is not the hung node: a direct get (events.Last) that
	// drew the hung replica waited up to 200 ms to be sent again, counted as the decider's.
	last := func() events.Status {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		e, _, ok, err := events.LeaderLast(ctx, js, events.StreamState, events.EndpointStateSubject("shop", "west", "w1"))
		var tr events.Transition
		if err != nil || !ok || e.Payload(&tr) != nil {
			return ""
		}
		return tr.To
	}
	// run starts a decider connected as user, as the role connects (its replies under its own
	// inbox, its consumers named for it).
	run := func(user string) (*decider.Stats, func()) {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		o := decider.Options{JS: js, Config: cfg, Name: user, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Stats: &decider.Stats{}}
		return o.Stats, eventstest.Run(t, "decider "+user, func(ctx context.Context) error { return decider.Run(ctx, o) })
	}
	eu := &prober{t: t, js: js, region: "eu"}
	for range 2 {
		eu.send("shop", "west", "w1", true)
	}
	// Deciders whose PROBES consumers JetStream placed on the node about to hang run until live
	// and stop, leaving their consumers there.
	users := c.LeftOn(t, hung, restarted, probes, "decider", "", func(user string) func() {
		stats, stop := run(user)
		eventstest.Eventually(t, 10*time.Second, stats.Live.Load, "decider %s live with every node awake", user)
		return stop
	})
	eventstest.Eventually(t, 10*time.Second, func() bool { return last() == events.StatusUp }, "w1 recorded up with every node awake")
	c.DirectGets(t, events.StreamProbes)
	c.DirectGets(t, events.StreamState)
	c.Silence(hung)

	var slowLive, slowRecorded time.Duration
	for i, user := range users {
		ok, want := i%2 == 1, events.StatusDown
		if ok {
			want = events.StatusUp
		}
		began := time.Now()
		stats, stop := run(user)
		for range 3 {
			eu.send("shop", "west", "w1", ok)
		}
		sent := time.Now()
		eventstest.Eventually(t, 15*time.Second, stats.Live.Load, "decider %s live with n%d hung", user, hung)
		live := time.Since(began)
		eventstest.Eventually(t, 15*time.Second, func() bool { return last() == want }, "w1 recorded %s by decider %s with n%d hung", want, user, hung)
		recorded := time.Since(sent)
		stop()
		t.Logf("%s: live %s after it was run, w1 %s recorded %s after its last result", user, live.Round(time.Millisecond), want, recorded.Round(time.Millisecond))
		slowLive, slowRecorded = max(slowLive, live), max(slowRecorded, recorded)
	}
	t.Logf("%d deciders restarted with n%d hung: the slowest live %s after it was run, the slowest change recorded %s after its last result",
		len(users), hung, slowLive.Round(time.Millisecond), slowRecorded.Round(time.Millisecond))
	if limit := 800 * time.Millisecond; slowLive > limit || slowRecorded > limit {
		t.Errorf("the slowest of %d deciders restarted went live %s after it was run and recorded a change %s after its last result, want both within %s with n%d hung",
			len(users), slowLive.Round(time.Millisecond), slowRecorded.Round(time.Millisecond), limit, hung)
	}
}

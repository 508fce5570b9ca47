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
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestAnAlertSenderRestartedWhileAReplicaHangsAlertsATransitionSoon: alert senders (the
// controller's) are restarted while one of three JetStream nodes hangs, the node that holds the
// STATE consumer each one's last run left, and a pool changes as each starts. The sender's STATE
// reader, with nothing to read by while it had no consumer, first waited for the hung node to say
// whether that consumer was in use and to delete it (0.25 s and 1 s), then for a creation
// JetStream may place on that node again (2 s): the webhook heard of the change 1.3 s or more
// after it was recorded; and, a change recorded before STATE caught up being owed from before the
// start, for the attempts ALERTS holds, read by a consumer of its own (5 s seen). The sender
// reads STATE, DRILLS and ALERTS by direct gets once it has gone 250 ms without a consumer:
// each alert arrives within 0.8 s.
func TestAnAlertSenderRestartedWhileAReplicaHangsAlertsATransitionSoon(t *testing.T) {
	const restarted = 3
	t.Setenv("DETOUR_TEST_HOOK_SECRET", "x")
	rc := &receiver{}
	hook := serve(t, rc)
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamState, events.StreamAlerts, events.StreamDrills)
	url := c.URLs[(hung+1)%len(c.Servers)]
	_, js := eventstest.ConnectJS(t, url)
	cfg := eventstest.Config(t, strings.Replace(strings.Replace(doc, "%q", `"`+hook.URL+`"`, 1),
		"on: [pool_down, failover]", "on: [transition]", 1))
	state, err := js.Stream(context.Background(), events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	// alerted reports whether the webhook accepted an alert of the event id (a sender stopped
	// before it recorded an attempt on ALERTS sends it again at its next start: at least once).
	alerted := func(id string) bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, body := range rc.accepted {
			var p alert.Payload
			if json.Unmarshal(body, &p) == nil && p.EventID == id {
				return true
			}
		}
		return false
	}
	// run starts an alert sender connected as user, as the controller connects (its replies
	// under its own inbox, its consumers named for it).
	run := func(user string) func() {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		return eventstest.Run(t, "alerts "+user, func(ctx context.Context) error {
			return alert.Run(ctx, alert.Options{JS: js, Config: cfg, Name: user, Backoff: 10 * time.Millisecond,
				Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		})
	}
	// Senders whose STATE consumers JetStream placed on the node about to hang, left there.
	users := c.LeftOn(t, hung, restarted, state, "controller", "alerts", run)
	c.DirectGets(t, events.StreamState)
	c.DirectGets(t, events.StreamAlerts)
	c.Silence(hung)

	var slowest time.Duration
	for i, user := range users {
		stop := run(user)
		typ, from, to := events.TypePoolDown, events.StatusUp, events.StatusDown
		if i%2 == 1 {
			typ, from, to = events.TypePoolUp, events.StatusDown, events.StatusUp
		}
		e := transition(t, js, events.PoolStateSubject("shop", "west"), typ, events.Transition{App: "shop", Pool: "west", From: from, To: to})
		sent := time.Now()
		eventstest.Eventually(t, 15*time.Second, func() bool { return alerted(e.ID) },
			"the webhook told of west %s by alert sender %s with n%d hung", to, user, hung)
		took := time.Since(sent)
		stop()
		t.Logf("%s: west %s alerted %s after it was recorded", user, to, took.Round(time.Millisecond))
		slowest = max(slowest, took)
	}
	if limit := 800 * time.Millisecond; slowest > limit {
		t.Errorf("the slowest of %d alert senders restarted with n%d hung alerted a transition %s after it was recorded, want within %s",
			len(users), hung, slowest.Round(time.Millisecond), limit)
	}
}

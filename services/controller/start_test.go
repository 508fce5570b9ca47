package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestEdgesGetFallTimesIntervalFromWhenTheControllerCanHearThem starts a controller before its
// streams exist, as at a cluster's start: for a second (over three times fall × interval) it
// hears no heartbeat. edge-west heartbeats all along and must not be recorded down for the
// heartbeats no one could hear; edge-east never comes and must go down, but not before it had
// fall × interval from the moment the controller could hear it.
func TestEdgesGetFallTimesIntervalFromWhenTheControllerCanHearThem(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{NoStreams: true})
	cfg := eventstest.Config(t, edgesDoc)
	const interval, fall = 100 * time.Millisecond, 3
	beat(t, ns, "edge-west", interval, make(chan struct{}))
	startController(t, ns, cfg, "controller-1")
	time.Sleep(time.Second) // the controller waits for STATE meanwhile: the scenario, not a wait for it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// heard is the last moment the server held no subscription of the controller's: it could
	// hear the edges only after it (and only once STATE exists).
	heard := time.Now()
	if err := events.EnsureStreams(ctx, ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	acc := ns.Server.GlobalAccount()
	eventstest.Eventually(t, 5*time.Second, func() bool {
		if acc.SubscriptionInterest(events.HeartbeatSubject("edge-east")) {
			return true
		}
		heard = time.Now()
		return false
	}, "the controller never subscribed to the heartbeats")

	east, west := events.EdgeStateSubject("edge-east"), events.EdgeStateSubject("edge-west")
	var got []events.Envelope
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = history(t, ns, events.StreamState, east)
		return len(got) > 0
	}, "edge-east, which never heartbeats, is not recorded down")
	if types(got) != "D" {
		t.Fatalf("edge-east history %q, want D", types(got))
	}
	after, least := got[0].Time.Sub(heard), time.Duration(fall)*interval
	if after < least || after > least+Tolerance(interval)+time.Second {
		t.Errorf("edge-east recorded down %s after the controller could hear it, want fall × interval (%s) to fall × interval + tolerance + 1 s",
			after.Round(time.Millisecond), time.Duration(fall)*interval)
	}
	t.Logf("edge-east recorded down %s after the controller could hear it (fall × interval %s)", after.Round(time.Millisecond), time.Duration(fall)*interval)
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(history(t, ns, events.StreamState, west)) > 0 }, "edge-west not recorded")
	if h := types(history(t, ns, events.StreamState, west)); h != "U" {
		t.Errorf("edge-west, heartbeating all along, history %q, want U: it was taken down for heartbeats no one could hear", h)
	}
}

// connClosed is a JetStream client whose connection for plain subscriptions is closed.
type connClosed struct {
	jetstream.JetStream
	nc *nats.Conn
}

func (c connClosed) Conn() *nats.Conn { return c.nc }

func TestAControllerThatCannotSubscribeToHeartbeatsReturnsItsError(t *testing.T) {
	// Before, Run waited for its STATE follower before stopping it, and never returned.
	ns := eventstest.Start(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	var logs eventstest.Logs
	done := make(chan error, 1)
	go func() {
		done <- Run(t.Context(), Options{JS: connClosed{JetStream: ns.JS, nc: nc}, Config: eventstest.Config(t, edgesDoc), Name: "controller-1", Log: zerolog.New(&logs)})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("Run returned %v, want the subscription's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of failing to subscribe")
	}
}

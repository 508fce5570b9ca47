package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/rs/zerolog"
)

// TestAFailedAlertIsNotSentAfterALaterAlertOfTheSamePoolWasDelivered has the webhook fail the
// alert of a pool going down (a receiver restarting) until the pool came back and its alert was
// delivered: the receiver, which takes the last alert of a pool for its state (as a
// PagerDuty-style trigger and resolve, or a person reading a channel), must not get the down
// after the up and believe the pool down.
func TestAFailedAlertIsNotSentAfterALaterAlertOfTheSamePoolWasDelivered(t *testing.T) {
	rc := &untilUp{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: version(t, 1, group("oncall", hook.URL, "")), Name: "controller-1",
			Backoff: 50 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))})
	})
	followsSTATE(t, ns, 5*time.Second, "")

	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(stored(t, ns, "oncall")) > 0 }, "the down's first attempt to fail")
	up := westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	var last events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for _, a := range stored(t, ns, "oncall") {
			if strings.Contains(a.Text, "up → down") {
				last = a
			}
		}
		return last.Result != events.AlertFailed
	}, "the down's delivery to end")

	rc.mu.Lock()
	defer rc.mu.Unlock()
	var got []string
	for _, body := range rc.accepted {
		var p alert.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, p.EventID)
	}
	if len(got) == 0 || got[len(got)-1] != up.ID {
		t.Errorf("the receiver accepted %v, want the up (%s) last, not the down (%s) after it", got, up.ID, down.ID)
	}
	if last.Result != events.AlertAbandoned || !strings.Contains(last.Error, "later alert") {
		t.Errorf("the down's last attempt is %+v, want it abandoned as superseded by the later alert", last)
	}
}

// untilUp fails every alert of a pool going down until it has accepted one of it coming up; it
// keeps what it accepted.
type untilUp struct {
	mu       sync.Mutex
	up       bool
	accepted [][]byte
}

func (u *untilUp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p alert.Payload
	_ = json.Unmarshal(body, &p)
	u.mu.Lock()
	defer u.mu.Unlock()
	if p.To == "down" && !u.up {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		return
	}
	u.up = u.up || p.To == "up"
	u.accepted = append(u.accepted, body)
}

// TestAfterARestartAFailedAlertIsNotSentAfterALaterAlertOfTheSamePoolThatWasDelivered is the
// restart's twin: the controller stopped while the down's delivery waited for its retry, after
// the up's was delivered; the one that starts goes on with the down's and must not send it.
func TestAfterARestartAFailedAlertIsNotSentAfterALaterAlertOfTheSamePoolThatWasDelivered(t *testing.T) {
	rc := &receiver{}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	down := westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	up := westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	recordFailed(t, ns, down, "oncall", hook.URL, 1, time.Now(), 0)
	id := events.DerivedID(up.ID, "oncall|"+hook.URL)
	a := events.AlertAttempt{Alert: "oncall", Kind: "transition", Webhook: hook.URL, Delivery: id, Attempt: 1, HTTPStatus: 200,
		Result: events.AlertDelivered, Text: "shop west up"}
	rec, err := events.Derived(events.TypeAlertAttempted, "controller-2", up.ID, id+"|1", time.Now(), a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.AlertClaimSubject("oncall", id, 1), rec); err != nil {
		t.Fatal(err)
	}

	logs := &eventstest.Logs{}
	startSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), logs, time.Now)
	owed(t, logs, `"new":0,"resumed":1,"skipped":1`)
	var last events.AlertAttempt
	eventstest.Eventually(t, 5*time.Second, func() bool {
		for _, a := range stored(t, ns, "oncall") {
			if a.Delivery == events.DerivedID(down.ID, "oncall|"+hook.URL) {
				last = a
			}
		}
		return last.Attempt == 2
	}, "the down's next attempt to be recorded")
	if n := rc.count(); n != 0 || last.Result != events.AlertAbandoned || !strings.Contains(last.Error, "later alert") {
		t.Errorf("the receiver got %d requests and the down's attempt 2 is %+v, want none and that attempt abandoned as superseded", n, last)
	}
}

// TestAfterSTATEIsCreatedAgainAFailedAlertIsSentThoughTheOldStreamsLastWasDeliveredMeanwhile
// recreates STATE while the alert of its last event (sequence 10) is failing. Delivered once the
// new stream was followed, it noted sequence 10 as delivered for the pool, so that the new
// stream's down (sequence 2), whose first attempt failed, had every retry abandoned as superseded
// by a later alert: the receiver never heard the pool went down.
func TestAfterSTATEIsCreatedAgainAFailedAlertIsSentThoughTheOldStreamsLastWasDeliveredMeanwhile(t *testing.T) {
	rc := &refusing{refuse: map[string]int{}}
	hook := serve(t, rc)
	ns := eventstest.Start(t)
	liveSender(t, ns, version(t, 1, group("oncall", hook.URL, "")), &eventstest.Logs{})
	west := events.PoolStateSubject("shop", "west")
	goes := func(to events.Status, failures int) events.Envelope {
		t.Helper()
		from, typ := events.StatusDown, events.TypePoolUp
		if to == events.StatusDown {
			from, typ = events.StatusUp, events.TypePoolDown
		}
		e, err := events.New(typ, "test", time.Now(), events.Transition{App: "shop", Pool: "west", From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		rc.mu.Lock()
		rc.refuse[e.ID] = failures
		rc.mu.Unlock()
		if _, err := events.Publish(context.Background(), ns.JS, west, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	for i := range 9 {
		goes([]events.Status{events.StatusDown, events.StatusUp}[i%2], 0)
	}
	last := goes(events.StatusUp, 1<<30) // sequence 10: refused until the new stream is followed
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered(last.ID) == 0 && rc.got(last.ID) > 0 && rc.delivered("") == 9 },
		"the old stream's 9 first alerts delivered and its last refused")

	if err := ns.JS.DeleteStream(context.Background(), events.StreamState); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(context.Background(), ns.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	followsSTATE(t, ns, 10*time.Second, "created again")
	up := goes(events.StatusUp, 0)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered(up.ID) == 1 }, "the new stream's first alert delivered")
	rc.mu.Lock()
	rc.refuse[last.ID] = 0
	rc.mu.Unlock()
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered(last.ID) == 1 }, "the old stream's last alert delivered")

	down := goes(events.StatusDown, 1)
	eventstest.Eventually(t, 5*time.Second, func() bool { return rc.delivered(down.ID) == 1 },
		"the new stream's down delivered on its retry; ALERTS holds %+v", stored(t, ns, "oncall"))
}

// refusing fails the deliveries of each event in refuse that many times, then accepts them; it
// keeps the event ids of what it got and accepted.
type refusing struct {
	mu       sync.Mutex
	refuse   map[string]int
	requests []string
	accepted []string
}

func (f *refusing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p alert.Payload
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &p)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, p.EventID)
	if f.refuse[p.EventID] > 0 {
		f.refuse[p.EventID]--
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	f.accepted = append(f.accepted, p.EventID)
}

// got and delivered count the requests for event id, and those accepted; of every event when
// id is "".
func (f *refusing) got(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return count(f.requests, id)
}

func (f *refusing) delivered(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return count(f.accepted, id)
}

func count(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id || id == "" {
			n++
		}
	}
	return n
}

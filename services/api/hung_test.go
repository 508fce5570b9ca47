package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestAnAPIRestartedWhileAReplicaHangsShowsATransitionSoon: the controller's API is restarted
// while one of three JetStream nodes hangs, the node that holds the STATE consumer each run left,
// and an endpoint changes as each starts. The API's STATE reader, with nothing to read by while
// it had no consumer, first waited for the hung node to say whether that consumer was in use and
// to delete it (0.25 s and 1 s), then for a creation JetStream may place on that node again
// (2 s): GET /v1/apps/shop showed the change 1.3 s or more after it was recorded. The API reads
// STATE, CONFIG and DRILLS by direct gets once it has gone 250 ms without a consumer: each
// change shows within 0.8 s.
func TestAnAPIRestartedWhileAReplicaHangsShowsATransitionSoon(t *testing.T) {
	const restarted = 3
	c := eventstest.StartCluster(t, 3)
	admin := c.Streams(t)
	hung := c.LeadingNone(t, admin, events.StreamState, events.StreamConfig, events.StreamDrills)
	url := c.URLs[(hung+1)%len(c.Servers)]
	_, js := eventstest.ConnectJS(t, url)
	if _, _, err := config.Apply(t.Context(), js, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	cfg := eventstest.Config(t, doc)
	path := filepath.Join(t.TempDir(), "tokens")
	read, err := api.AddToken(path, "viewer", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	state, err := js.Stream(t.Context(), events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	// run starts an API connected as user, as the controller connects (its replies under its own
	// inbox, its consumers named for it), and returns its address.
	run := func(user string) (addr string, stop func()) {
		_, js := eventstest.ConnectJS(t, url, nats.CustomInboxPrefix(events.InboxPrefix(user)))
		srv, err := api.Listen(api.Options{JS: js, Config: cfg, Addr: "127.0.0.1:0", Tokens: tokens,
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		if err != nil {
			t.Fatal(err)
		}
		return srv.Addr(), eventstest.Run(t, "api "+user, srv.Run)
	}
	// reason is the reason of w1's last transition as the API at addr shows it.
	reason := func(addr string) string {
		req, err := http.NewRequest("GET", "http://"+addr+"/v1/apps/shop", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var app api.App
		if json.Unmarshal(body, &app) != nil {
			return ""
		}
		for _, p := range app.Pools {
			for _, e := range p.Endpoints {
				if e.Name == "w1" {
					return e.Reason
				}
			}
		}
		return ""
	}
	// APIs whose STATE consumers JetStream placed on the node about to hang, left there.
	users := c.LeftOn(t, hung, restarted, state, "controller", "api", func(user string) func() {
		_, stop := run(user)
		return stop
	})
	c.DirectGets(t, events.StreamState)
	c.DirectGets(t, events.StreamConfig)
	c.Silence(hung)

	var slowest time.Duration
	for i, user := range users {
		addr, stop := run(user)
		to, typ, why := events.StatusDown, events.TypeEndpointDown, fmt.Sprintf("restart %d", i)
		if i%2 == 1 {
			to, typ = events.StatusUp, events.TypeEndpointUp
		}
		e, err := events.New(typ, "test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: to, Reason: why})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(t.Context(), js, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		eventstest.Eventually(t, 15*time.Second, func() bool { return reason(addr) == why },
			"API %s to show w1 %s (%s) with n%d hung", user, to, why, hung)
		took := time.Since(sent)
		stop()
		t.Logf("%s: w1 %s shown %s after it was recorded", user, to, took.Round(time.Millisecond))
		slowest = max(slowest, took)
	}
	if limit := 800 * time.Millisecond; slowest > limit {
		t.Errorf("the slowest of %d APIs restarted with n%d hung showed a transition %s after it was recorded, want within %s",
			len(users), hung, slowest.Round(time.Millisecond), limit)
	}
}

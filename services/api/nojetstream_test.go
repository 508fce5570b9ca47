package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// A NATS server without JetStream (a node started without it, or an account not given it)
// answers no request of JetStream's API: every request of the API that needs the cluster is
// answered 503 with Retry-After, naming JetStream, not 502 with a Go error ("nats: no responders
// available for request", "nats: no response from stream").
func TestARequestToAClusterWithoutJetStreamIsAnswered503NamingJetStream(t *testing.T) {
	f := start(t)
	ns := startWithoutJetStream(t)
	_, js := eventstest.ConnectJS(t, ns.ClientURL())
	srv, err := api.Listen(api.Options{JS: js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-without-jetstream", srv.Run)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	for _, c := range []struct{ name, method, path, token, body string }{
		{"config", "GET", "/v1/config", f.read, ""},
		{"history", "GET", "/v1/config/history", f.read, ""},
		{"plan", "POST", "/v1/config/plan", f.read, next},
		{"apply", "POST", "/v1/config/apply", f.write, next},
		{"overrides", "GET", "/v1/overrides", f.read, ""},
		{"override set", "POST", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`},
		{"drills", "GET", "/v1/drills", f.read, ""},
		{"drill rollback", "POST", "/v1/drills/d1/rollback", f.write, ""},
	} {
		code, retryAfter, b := (&fixture{url: "http://" + srv.Addr()}).doWithin(t, time.Minute, c.method, c.path, c.token, c.body)
		if code != http.StatusServiceUnavailable || retryAfter == "" || !strings.Contains(b, "JetStream") {
			t.Errorf("%s: %d (Retry-After %q) %s, want 503 with Retry-After naming JetStream", c.name, code, retryAfter, b)
		}
	}
}

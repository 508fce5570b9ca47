package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// While a JetStream leader is elected, the servers answer requests of JetStream's API with an
// error that says to try again: "JetStream system temporarily unavailable" (10008, status 503)
// while the cluster's meta leader is elected, "stream is offline" (10118) or "JetStream cluster can
// not handle request" (10009) while a stream's is. Every request of the API that needs the
// cluster is answered 503 with Retry-After, as when no server runs JetStream, where it was
// answered 502 with the Go error.
func TestARequestDuringAJetStreamLeaderElectionIsAnswered503WithRetryAfter(t *testing.T) {
	f := start(t)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	for _, electing := range []struct {
		code, errCode int
		description   string
	}{
		{503, 10008, "JetStream system temporarily unavailable"},
		{500, 10118, "stream is offline"},
		{500, 10009, "JetStream cluster can not handle request"},
	} {
		t.Run(fmt.Sprint(electing.errCode), func(t *testing.T) {
			// A NATS server whose JetStream API answers every request so: the stream's messages
			// themselves reach no one (no responders), as no leader stores them.
			ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
			if err != nil {
				t.Fatal(err)
			}
			ns.Start()
			t.Cleanup(ns.Shutdown)
			if !ns.ReadyForConnections(10 * time.Second) {
				t.Fatal("nats server not ready in 10s")
			}
			answer := fmt.Appendf(nil, `{"error": {"code": %d, "err_code": %d, "description": %q}}`, electing.code, electing.errCode, electing.description)
			nc := eventstest.Connect(t, ns.ClientURL())
			for _, api := range []string{"$JS.API.STREAM.>", "$JS.API.CONSUMER.>"} {
				if _, err := nc.Subscribe(api, func(m *nats.Msg) { _ = m.Respond(answer) }); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			_, js := eventstest.ConnectJS(t, ns.ClientURL())
			srv, err := api.Listen(api.Options{JS: js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
				Log: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			eventstest.Run(t, "api-electing", srv.Run)
			for _, c := range []struct{ name, method, path, token, body string }{
				{"config", "GET", "/v1/config", f.read, ""},
				{"history", "GET", "/v1/config/history", f.read, ""},
				{"plan", "POST", "/v1/config/plan", f.read, next},
				{"apply", "POST", "/v1/config/apply", f.write, next},
				{"overrides", "GET", "/v1/overrides", f.read, ""},
				{"override set", "POST", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`},
				{"override clear", "DELETE", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "reason": "done"}`},
				{"drills", "GET", "/v1/drills", f.read, ""},
				{"drill rollback", "POST", "/v1/drills/d1/rollback", f.write, ""},
			} {
				code, retryAfter, b := (&fixture{url: "http://" + srv.Addr()}).doWithin(t, time.Minute, c.method, c.path, c.token, c.body)
				if code != http.StatusServiceUnavailable || retryAfter == "" {
					t.Errorf("%s: %d (Retry-After %q) %s, want 503 with Retry-After", c.name, code, retryAfter, b)
				}
			}
		})
	}
}

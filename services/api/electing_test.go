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

// startWithoutJetStream starts a NATS server on loopback whose JetStream is off: no request of
// JetStream's API reaches anything there but what a test subscribes.
func startWithoutJetStream(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	return ns
}

// jetStreamAnswering starts an API, with f's tokens, on a NATS server whose JetStream API answers
// every request with JetStream's error of status code, error code errCode and description; the
// stream's messages themselves reach no one (no responders), as no leader stores them. It
// returns a fixture that sends requests to that API.
func jetStreamAnswering(t *testing.T, f *fixture, code, errCode int, description string) *fixture {
	t.Helper()
	ns := startWithoutJetStream(t)
	answer := fmt.Appendf(nil, `{"error": {"code": %d, "err_code": %d, "description": %q}}`, code, errCode, description)
	nc := eventstest.Connect(t, ns.ClientURL())
	for _, api := range []string{"$JS.API.STREAM.>", "$JS.API.CONSUMER.>"} {
		if _, err := nc.Subscribe(api, func(m *nats.Msg) { _ = m.Respond(answer) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return apiOn(t, f, ns.ClientURL(), fmt.Sprintf("api-answered-%d", errCode))
}

// apiOn starts an API, with f's tokens, on the NATS server at url, and returns a fixture that
// sends requests to it.
func apiOn(t *testing.T, f *fixture, url, name string) *fixture {
	t.Helper()
	_, js := eventstest.ConnectJS(t, url)
	srv, err := api.Listen(api.Options{JS: js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, name, srv.Run)
	return &fixture{url: "http://" + srv.Addr()}
}

// clusterRequests are the requests of the API that need the cluster.
func clusterRequests(f *fixture) []struct{ name, method, path, token, body string } {
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	return []struct{ name, method, path, token, body string }{
		{"config", "GET", "/v1/config", f.read, ""},
		{"history", "GET", "/v1/config/history", f.read, ""},
		{"plan", "POST", "/v1/config/plan", f.read, next},
		{"apply", "POST", "/v1/config/apply", f.write, next},
		{"overrides", "GET", "/v1/overrides", f.read, ""},
		{"override set", "POST", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`},
		{"override clear", "DELETE", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "reason": "done"}`},
		{"drills", "GET", "/v1/drills", f.read, ""},
		{"drill rollback", "POST", "/v1/drills/d1/rollback", f.write, ""},
	}
}

// While a JetStream leader is elected, the servers answer requests of JetStream's API with an
// error that says to try again: "JetStream system temporarily unavailable" (10008, status 503)
// while the cluster's meta leader is elected, "stream is offline" (10118) or "JetStream cluster can
// not handle request" (10009) while a stream's is. Every request of the API that needs the
// cluster is answered 503 with Retry-After, as when no server runs JetStream, where it was
// answered 502 with the Go error.
func TestARequestDuringAJetStreamLeaderElectionIsAnswered503WithRetryAfter(t *testing.T) {
	f := start(t)
	for _, electing := range []struct {
		code, errCode int
		description   string
	}{
		{503, 10008, "JetStream system temporarily unavailable"},
		{500, 10118, "stream is offline"},
		{500, 10009, "JetStream cluster can not handle request"},
	} {
		t.Run(fmt.Sprint(electing.errCode), func(t *testing.T) {
			a := jetStreamAnswering(t, f, electing.code, electing.errCode, electing.description)
			for _, c := range clusterRequests(f) {
				code, retryAfter, b := a.doWithin(t, time.Minute, c.method, c.path, c.token, c.body)
				if code != http.StatusServiceUnavailable || retryAfter == "" {
					t.Errorf("%s: %d (Retry-After %q) %s, want 503 with Retry-After", c.name, code, retryAfter, b)
				}
			}
		})
	}
}

// A stream offline because a server does not support its definition or API level (10194, until
// that server is upgraded) and JetStream not enabled, for the account (10039) or the server
// (10076), hold until an operator acts. They were answered 503 with Retry-After, "try again",
// and a script that honours it retried for ever. Every request of the API that needs the
// cluster is answered 502 with JetStream's reason, without Retry-After; but an override set,
// which publishes and asks JetStream's API nothing, finds no stream that answers, as while a
// stream's leader is elected, and is answered 503.
func TestARequestJetStreamRefusesUntilAnOperatorActsIsAnswered502WithItsReason(t *testing.T) {
	f := start(t)
	for _, refusal := range []struct {
		code, errCode int
		description   string
	}{
		{500, 10194, "stream is offline: unsupported api level 3"},
		{503, 10039, "JetStream not enabled for account"},
		{503, 10076, "JetStream not enabled"},
	} {
		t.Run(fmt.Sprint(refusal.errCode), func(t *testing.T) {
			a := jetStreamAnswering(t, f, refusal.code, refusal.errCode, refusal.description)
			for _, c := range clusterRequests(f) {
				if c.name == "override set" {
					continue
				}
				code, retryAfter, b := a.doWithin(t, time.Minute, c.method, c.path, c.token, c.body)
				if code != http.StatusBadGateway || retryAfter != "" || !strings.Contains(b, refusal.description) || strings.Contains(b, "try again") {
					t.Errorf("%s: %d (Retry-After %q) %s, want 502 with JetStream's reason %q, no Retry-After, no \"try again\"",
						c.name, code, retryAfter, b, refusal.description)
				}
			}
		})
	}
}

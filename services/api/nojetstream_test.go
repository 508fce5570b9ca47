package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A NATS server without JetStream (a node started without it, or an account not given it)
// answers no request of JetStream's API: every request of the API that needs the cluster is
// answered 503 with Retry-After, naming JetStream, not 502 with a Go error ("nats: no responders
// available for request", "nats: no response from stream").
func TestARequestToAClusterWithoutJetStreamIsAnswered503NamingJetStream(t *testing.T) {
	f := start(t)
	a := apiOn(t, f, startWithoutJetStream(t).ClientURL(), "api-without-jetstream")
	for _, c := range clusterRequests(f) {
		code, retryAfter, b := a.doWithin(t, time.Minute, c.method, c.path, c.token, c.body)
		if code != http.StatusServiceUnavailable || retryAfter == "" || !strings.Contains(b, "JetStream") {
			t.Errorf("%s: %d (Retry-After %q) %s, want 503 with Retry-After naming JetStream", c.name, code, retryAfter, b)
		}
	}
}

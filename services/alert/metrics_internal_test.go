package alert

import (
	"cmp"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestAnAttemptsReasonIsItsStatusClassOrWhyNoAnswerCame: each attempt's reason, as
// detour_alert_attempts_total labels it, read from what a webhook on loopback really did: one
// of a few values an operator can alert on, whatever the webhook.
func TestAnAttemptsReasonIsItsStatusClassOrWhyNoAnswerCame(t *testing.T) {
	answering := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := "http://" + closed.Addr().String()
	_ = closed.Close()
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
		want string
		// timeout bounds the attempt; default 10s, the sender's.
		timeout time.Duration
	}{
		{"accepted", serving(answering(http.StatusNoContent), false), "", 0},
		{"a redirect", serving(answering(http.StatusFound), false), "3xx", 0},
		{"a 404", serving(answering(http.StatusNotFound), false), "4xx", 0},
		{"a 503", serving(answering(http.StatusServiceUnavailable), false), "5xx", 0},
		{"no answer within the timeout", serving(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // read, the request's context ends as the sender hangs up
			<-r.Context().Done()
		}), false), reasonTimeout, 200 * time.Millisecond},
		{"a closed port", func(*testing.T) string { return refusing }, reasonConnect, 0},
		{"a certificate of an unknown authority", serving(answering(http.StatusOK), true), reasonTLS, 0},
		{"the connection closed before an answer", serving(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = c.Close()
			}
		}), false), reasonError, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &runner{o: Options{Client: &http.Client{}, Timeout: cmp.Or(tc.timeout, 10*time.Second), Now: time.Now}}
			d := &delivery{url: tc.url(t), secret: &secret{}, id: "d", body: []byte("{}")}
			code, _, err := r.send(context.Background(), d, 1)
			if got := attemptReason(code, err); got != tc.want {
				t.Errorf("attempt answered %d, %v: reason %q, want %q", code, err, got, tc.want)
			}
		})
	}
}

// serving returns the URL of h served on loopback (with TLS, a certificate the client does not
// trust) until the test ends.
func serving(h http.Handler, withTLS bool) func(t *testing.T) string {
	return func(t *testing.T) string {
		s := httptest.NewUnstartedServer(h)
		if withTLS {
			s.StartTLS()
		} else {
			s.Start()
		}
		t.Cleanup(s.Close)
		return s.URL
	}
}

// TestAnAttemptAWebhookRefusedTheTLSHandshakeOfHasReasonTLS: a webhook that refuses the
// handshake (it asks for a client certificate the sender has none of, with TLS 1.2 or 1.3)
// answers with a TLS alert, which the attempt's reason tells as tls, as the metric's help says.
func TestAnAttemptAWebhookRefusedTheTLSHandshakeOfHasReasonTLS(t *testing.T) {
	asking := func(version uint16) func(t *testing.T) (string, *http.Client) {
		return func(t *testing.T) (string, *http.Client) {
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			s.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, MinVersion: version, MaxVersion: version}
			s.StartTLS()
			t.Cleanup(s.Close)
			return s.URL, s.Client() // a client that trusts the server
		}
	}
	for _, tc := range []struct {
		name string
		hook func(t *testing.T) (string, *http.Client)
	}{
		{"a client certificate asked for with TLS 1.2", asking(tls.VersionTLS12)},
		{"a client certificate asked for with TLS 1.3", asking(tls.VersionTLS13)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, client := tc.hook(t)
			r := &runner{o: Options{Client: client, Timeout: 10 * time.Second, Now: time.Now}}
			d := &delivery{url: url, secret: &secret{}, id: "d", body: []byte("{}")}
			code, _, err := r.send(context.Background(), d, 1)
			if got := attemptReason(code, err); got != reasonTLS {
				t.Errorf("attempt answered %d, %v: reason %q, want %q", code, err, got, reasonTLS)
			}
		})
	}
}

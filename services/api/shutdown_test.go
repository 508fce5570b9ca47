package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// An apply whose version was sent when the API shut down, closing its connection to NATS before
// the answer came, says it may have been stored and how to tell, as one the cluster did not answer
// in time does: it was answered with the closed connection's error alone, or "nothing stored".
func TestAnApplySentWhenTheAPIShutsDownSaysItMayHaveBeenStored(t *testing.T) {
	base := start(t)
	nc, js := eventstest.ConnectJS(t, base.ns.URL)
	srv, err := api.Listen(api.Options{JS: js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: base.tokens,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	stop := eventstest.Run(t, "api-shutting-down", srv.Run)
	f := *base
	f.srv, f.url = srv, "http://"+srv.Addr()
	stored := base.ns.Stream(t, events.StreamConfig)
	base.configAnswers(t, false) // CONFIG stores the version and answers nothing yet
	type answer struct {
		code int
		body string
	}
	answered := make(chan answer, 1)
	go func() {
		code, body := f.do(t, "POST", "/v1/config/apply", f.write, strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1))
		answered <- answer{code, body}
	}()
	eventstest.Eventually(t, 10*time.Second, func() bool {
		info, err := stored.Info(t.Context())
		return err == nil && info.State.LastSeq == 2
	}, "the apply's version not stored")
	stop()     // the process stops its API,
	nc.Close() // then its connection to NATS
	a := <-answered
	if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "may have been stored") || !strings.Contains(a.body, "stores nothing if it was") || strings.Contains(a.body, "nothing stored") {
		t.Errorf("apply sent as the API shut down: %d %s, want 503 saying it may have been stored", a.code, a.body)
	}
}

package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// configAnswers makes CONFIG answer the publishes it stores (ack), or store them and answer
// nothing, as a leader that took a publish and died before answering.
func (f *fixture) configAnswers(t *testing.T, ack bool) {
	t.Helper()
	st, err := f.ns.JS.Stream(t.Context(), events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	c.NoAck = !ack
	if _, err := f.ns.JS.UpdateStream(t.Context(), c); err != nil {
		t.Fatal(err)
	}
}

// A client that sends a write and leaves at once, again and again, while the cluster does not
// answer it, had each write run on for the API's whole wait for the cluster: nothing bounded how
// many, and every one held a goroutine and a NATS request. Past the API's bound the next write is
// answered 503 with Retry-After, naming the bound, reads go on, and writes are taken again once
// those in flight end.
func TestWritesPastTheBoundOfThoseInFlightAreAnswered503WithRetryAfter(t *testing.T) {
	base := start(t)
	srv, err := api.Listen(api.Options{JS: base.ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: base.tokens,
		ClusterWait: 3 * time.Second, MaxWrites: 2, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-bounded-writes", srv.Run)
	f := *base
	f.srv, f.url = srv, "http://"+srv.Addr()
	addr := srv.Addr()
	n := 0
	next := func() string { // a document no version holds yet, so that its apply stores one
		n++
		return fmt.Sprintf("%s# write %d\n", doc, n)
	}
	base.configAnswers(t, false)
	for range 2 {
		sendAndLeave(t, addr, "POST", "/v1/config/apply", f.write, next())
	}
	// A write that finds a place runs on after its client gives up on it, as those above do.
	var code int
	var retry, body string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, retry, body = f.doWithin(t, time.Second, "POST", "/v1/config/apply", f.write, next())
		return code == http.StatusServiceUnavailable
	}, "no write answered 503 while two abandoned ones ran: last %d %s", &code, &body)
	if retry != "3" || !strings.Contains(body, "2 writes are running, as many as the API runs at once") {
		t.Errorf("write past the bound: Retry-After %q, %s; want Retry-After 3 (the wait for the cluster) naming the bound", retry, body)
	}
	if code, body := f.do(t, "GET", "/v1/apps", f.read, ""); code != http.StatusOK {
		t.Errorf("a read while the writes are at their bound: %d %s, want 200", code, body)
	}
	base.configAnswers(t, true)
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, _, body = f.doWithin(t, time.Second, "POST", "/v1/config/apply", f.write, next())
		return code == http.StatusOK
	}, "no write taken once those in flight ended: last %d %s", &code, &body)
}

// doWithin sends a request as do does, giving up on it after within (code 0 then), and returns
// its Retry-After too.
func (f *fixture) doWithin(t *testing.T, within time.Duration, method, path, token, body string) (code int, retryAfter, answer string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err.Error()
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

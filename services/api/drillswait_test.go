package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// unfolded returns the handler of an API server whose fold of DRILLS never moves (the server is
// not run, as when its follower cannot create its consumer), a read token, and the test server,
// whose DRILLS holds a drill.
func unfolded(t *testing.T) (http.Handler, string, *eventstest.Server) {
	t.Helper()
	ns := eventstest.Start(t)
	e, err := events.New(events.TypeDrillStarted, "drill/ops", time.Now(), events.DrillStarted{ID: "d1", Name: "west", By: "ops",
		Apps: []string{"shop"}, Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.DrillSubject("d1"), e); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	read, err := api.AddToken(path, "viewer", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.Listen(api.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: toks,
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler(), read, ns
}

// While the API has not folded what DRILLS holds, a list of the drills waits for it for 5 s,
// then answers 503 saying why and to try again: never an empty list, never a request held for
// longer.
func TestTheDrillsListAnswers503AfterFiveSecondsWhileTheAPIHasNotReadDRILLS(t *testing.T) {
	h, read, _ := unfolded(t)
	req := httptest.NewRequest("GET", "/v1/drills", nil)
	req.Header.Set("Authorization", "Bearer "+read)
	w := httptest.NewRecorder()
	began := time.Now()
	h.ServeHTTP(w, req)
	took := time.Since(began)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "has not read DRILLS up to its last event yet") ||
		!strings.Contains(w.Body.String(), "try again") {
		t.Fatalf("GET /v1/drills: %d %s, want 503 saying the API has not read DRILLS yet", w.Code, w.Body)
	}
	if took < 5*time.Second || took > 7*time.Second {
		t.Errorf("answered after %s, want after the 5 s wait", took)
	}
}

// A client that goes away while its list of the drills waits for the API's fold ends the wait:
// requests held by a fold that cannot catch up do not pile up for their 5 s each.
func TestADrillsListWhoseClientLeftStopsWaiting(t *testing.T) {
	h, read, ns := unfolded(t)
	// The handler asks for DRILLS's state, then waits: it is waiting once the answer went out.
	asked, answers := make(chan *nats.Msg, 1), make(chan *nats.Msg, 64)
	nc := eventstest.Connect(t, ns.URL)
	if _, err := nc.ChanSubscribe("$JS.API.STREAM.INFO."+events.StreamDrills, asked); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe("_INBOX.>", answers); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/v1/drills", nil)
	req.Header.Set("Authorization", "Bearer "+read)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, req)
	}()
	var info *nats.Msg
	select {
	case info = <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never asked for DRILLS's state")
	}
	for answered := false; !answered; {
		select {
		case m := <-answers:
			answered = m.Subject == info.Reply
		case <-time.After(5 * time.Second):
			t.Fatal("DRILLS's state was never answered")
		}
	}
	left := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler went on after its client left")
	}
	if took := time.Since(left); took > time.Second {
		t.Errorf("the handler ended %s after its client left, want at once", took)
	}
}

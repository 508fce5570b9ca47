package api_test

import (
	"context"
	"encoding/json"
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
// not run, as when its follower cannot create its consumer), which waits for the cluster as
// long as wait says (0: the default), a read token, and the test server, whose DRILLS holds a
// drill.
func unfolded(t *testing.T, wait time.Duration) (http.Handler, string, *eventstest.Server) {
	t.Helper()
	ns := eventstest.Start(t)
	storeDrill(t, ns, "d1")
	srv, read := drillsAPI(t, ns, wait)
	return srv.Handler(), read, ns
}

// storeDrill stores the start of drill id.
func storeDrill(t *testing.T, ns *eventstest.Server, id string) {
	t.Helper()
	e, err := events.New(events.TypeDrillStarted, "drill/ops", time.Now(), events.DrillStarted{ID: id, Name: "west", By: "ops",
		Apps: []string{"shop"}, Steps: 1, RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.DrillSubject(id), e); err != nil {
		t.Fatal(err)
	}
}

// drillsAPI returns an API server on ns, not run, which waits for the cluster as long as wait
// says (0: the default), and a read token.
func drillsAPI(t *testing.T, ns *eventstest.Server, wait time.Duration) (*api.Server, string) {
	t.Helper()
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
		ClusterWait: wait, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	return srv, read
}

// While the API has not folded what DRILLS holds, a list of the drills waits for it as long as
// the API waits for the cluster (Options.ClusterWait, here 1.5 s), then answers 503 saying why
// and to try again: never an empty list, never a request held for longer. It waited 5 s of its
// own, whatever ClusterWait said.
func TestTheDrillsListAnswers503AfterTheClusterWaitWhileTheAPIHasNotReadDRILLS(t *testing.T) {
	const wait = 1500 * time.Millisecond
	h, read, _ := unfolded(t, wait)
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
	if took < wait || took > wait+2*time.Second {
		t.Errorf("answered after %s, want after the %s wait", took, wait)
	}
	if w.Header().Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
}

// A client that goes away while its list of the drills waits for the API's fold ends the wait:
// requests held by a fold that cannot catch up do not pile up for their 10 s each.
func TestADrillsListWhoseClientLeftStopsWaiting(t *testing.T) {
	h, read, ns := unfolded(t, 0)
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

// An operator removed the last message DRILLS holds (`nats stream rmm DRILLS <seq>`: a forged
// event, say), so the stream's last sequence is one no reader can read: the API lists the drills
// DRILLS holds at once, not 503 after 5 s until the next drill event is stored.
func TestTheDrillsAreListedAtOnceThoughTheLastMessageOfDRILLSWasRemoved(t *testing.T) {
	ns := eventstest.Start(t)
	storeDrill(t, ns, "d1")
	storeDrill(t, ns, "forged")
	st := ns.Stream(t, events.StreamDrills)
	if err := st.DeleteMsg(t.Context(), st.CachedInfo().State.LastSeq); err != nil {
		t.Fatal(err)
	}
	srv, read := drillsAPI(t, ns, 0)
	eventstest.Run(t, "api", srv.Run)
	for range 3 {
		req, err := http.NewRequest("GET", "http://"+srv.Addr()+"/v1/drills", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+read)
		began := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Drills []api.Drill }
		err = json.NewDecoder(resp.Body).Decode(&out)
		_ = resp.Body.Close()
		if took := time.Since(began); resp.StatusCode != http.StatusOK || err != nil || took > 2*time.Second {
			t.Fatalf("GET /v1/drills: %d (%v) after %s, want 200 at once", resp.StatusCode, err, took)
		}
		if got := ids(out.Drills); len(got) != 1 || got[0] != "d1:in_force" {
			t.Fatalf("drills %v, want d1 in force", got)
		}
	}
}

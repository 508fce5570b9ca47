package demo

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func startTestControl(t *testing.T) (*Control, *Switch) {
	t.Helper()
	sw := NewSwitch("edge edge-west", func(ctx context.Context) error { <-ctx.Done(); return nil })
	sw.Start(context.Background(), func(role string, err error) { t.Errorf("%s: %v", role, err) })
	t.Cleanup(func() { sw.Stop() })
	edges := map[string]*Switch{"edge-west": sw}
	c, err := StartControl("127.0.0.1:0", func(name string) *Switch { return edges[name] }, func(role string, err error) { t.Errorf("%s: %v", role, err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, sw
}

func post(t *testing.T, url, auth string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestTheDemoControlStopsAnEdgeOnlyWithItsToken(t *testing.T) {
	c, sw := startTestControl(t)
	url := "http://" + c.Addr() + "/edges/edge-west/stop"
	for _, auth := range []string{"", "Bearer wrong", c.Token(), "Basic " + c.Token()} {
		if code := post(t, url, auth); code != http.StatusUnauthorized {
			t.Errorf("POST with Authorization %q: status %d, want 401", auth, code)
		}
	}
	if !sw.Running() {
		t.Fatal("a request without the token stopped the edge")
	}
	if code := post(t, url, "Bearer "+c.Token()); code != http.StatusOK {
		t.Fatalf("POST with the token: status %d, want 200", code)
	}
	if sw.Running() {
		t.Error("the edge still runs after an authorized stop")
	}
}

func TestTheDemoControlRefusesRequestsFromOffTheMachine(t *testing.T) {
	c, sw := startTestControl(t)
	req := httptest.NewRequest(http.MethodPost, "/edges/edge-west/stop", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	req.Header.Set("Authorization", "Bearer "+c.Token())
	rec := httptest.NewRecorder()
	c.srv.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !sw.Running() {
		t.Errorf("status %d, edge running %v; want 403 and still running", rec.Code, sw.Running())
	}
}

func TestASwitchReportsItsRoleFailingOrStoppingOnItsOwnButNotAStop(t *testing.T) {
	type report struct {
		role string
		err  error
	}
	reports := make(chan report, 3)
	rec := func(role string, err error) { reports <- report{role, err} }
	failing := NewSwitch("edge edge-west", func(context.Context) error { return errors.New("listen: address in use") })
	failing.Start(context.Background(), rec)
	quitting := NewSwitch("edge edge-east", func(context.Context) error { return nil })
	quitting.Start(context.Background(), rec)
	got := map[string]string{}
	for range 2 { // the two roles that return on their own report it, without being stopped
		select {
		case r := <-reports:
			got[r.role] = r.err.Error()
		case <-time.After(5 * time.Second):
			t.Fatalf("reports %v, want two", got)
		}
	}
	stopped := NewSwitch("edge edge-north", func(ctx context.Context) error { <-ctx.Done(); return nil })
	stopped.Start(context.Background(), rec)
	stopped.Stop()
	failing.Stop()
	quitting.Stop()
	close(reports)
	for r := range reports {
		got[r.role] = r.err.Error()
	}
	want := map[string]string{"edge edge-west": "listen: address in use", "edge edge-east": "stopped on its own"}
	if !maps.Equal(got, want) {
		t.Errorf("reports %v, want %v", got, want)
	}
}

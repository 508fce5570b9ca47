package demo

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func startTestControl(t *testing.T) (*Control, *Switch) {
	t.Helper()
	sw := NewSwitch("edge edge-west", func(ctx context.Context) error { <-ctx.Done(); return nil })
	sw.Start(context.Background(), func(err error) { t.Error(err) })
	t.Cleanup(func() { sw.Stop() })
	c, err := StartControl("127.0.0.1:0", map[string]*Switch{"edge-west": sw}, func(err error) { t.Error(err) })
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

package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHopByHopHeadersAreNotForwarded(t *testing.T) {
	seen := make(chan http.Header, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "backend secret")
		w.Header().Set("Keep-Alive", "timeout=5")
	}))
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	req, _ := http.NewRequest("GET", "http://"+c.west+"/", nil)
	req.Header.Set("Connection", "X-Session")
	req.Header.Set("X-Session", "client secret")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("X-Kept", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	h := <-seen
	for _, k := range []string{"X-Session", "Proxy-Authorization"} {
		if v := h.Get(k); v != "" {
			t.Errorf("the backend received %s: %q", k, v)
		}
	}
	if h.Get("X-Kept") != "yes" {
		t.Errorf("the backend did not receive an end-to-end header: %v", h)
	}
	for _, k := range []string{"X-Internal", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("the client received %s: %q", k, v)
		}
	}
}

func TestConnectionsToAnInstanceAreReusedAndReplacedWhenItClosesThem(t *testing.T) {
	var opened atomic.Int64
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	for range 10 {
		if resp, body := get(t, "http://"+c.west+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("10 sequential requests opened %d connections to the instance, want 1", n)
	}
	for i := range 5 {
		b.CloseClientConnections() // the instance drops its idle connections
		if resp, body := get(t, "http://"+c.west+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after the instance closed its connections: %d %q", i, resp.StatusCode, body)
		}
	}
}

func TestAHeadRequestAndTrailersPassThrough(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "payload")
		}
		w.Header().Set("X-Checksum", "abc123")
	}))
	t.Cleanup(b.Close)
	e1 := backend(t, "e1")
	c := twoEdges(t, []string{b.Listener.Addr().String()}, []string{e1.Listener.Addr().String()}, "http", "")
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + c.west + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "payload" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Errorf("GET: body %q trailer %v, want payload with X-Checksum abc123", body, resp.Trailer)
	}
	resp, err = client.Head("http://" + c.west + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
}

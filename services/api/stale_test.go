package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats-server/v2/server"
)

// startOnFiles starts an API on a NATS server whose streams are files, so that the server can be
// stopped and restarted (eventstest.Server.Stop, Restart).
func startOnFiles(t *testing.T) *fixture {
	t.Helper()
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	return serveAPI(t, ns)
}

// serveAPI starts an API on ns with a read token.
func serveAPI(t *testing.T, ns *eventstest.Server) *fixture {
	t.Helper()
	srv, read := drillsAPI(t, ns, 0)
	eventstest.Run(t, "api-on-files", srv.Run)
	return &fixture{ns: ns, srv: srv, url: "http://" + srv.Addr(), read: read}
}

// While the API's connection to NATS is down, the status page says so instead of showing its
// last view as live: no STATE event reaches it, and the page kept its green "live" mark while
// endpoints changed unseen. Once the connection is back, the page is live again.
func TestTheStatusPageSaysWhenTheAPIIsNotConnectedToNATS(t *testing.T) {
	f := startOnFiles(t)
	ns := f.ns
	resp, err := http.Get(f.url + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	statuses := make(chan api.Status)
	go func() {
		defer close(statuses)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var st api.Status
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				t.Errorf("status event %s: %v", data, err)
				return
			}
			statuses <- st
		}
	}()
	until := func(what string, ok func(api.Status) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case st, open := <-statuses:
				if !open {
					t.Fatalf("%s: the stream ended", what)
				}
				if ok(st) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no such status within 10s", what)
			}
		}
	}
	until("a live status", func(st api.Status) bool { return st.Stale == "" })

	ns.Stop()
	until("a status saying the API is not connected to NATS", func(st api.Status) bool {
		return strings.Contains(st.Stale, "the API is not connected to NATS")
	})
	code, body := f.do(t, "GET", "/v1/status", f.read, "")
	if code != http.StatusOK || !strings.Contains(body, `"stale": "the API is not connected to NATS`) {
		t.Errorf("GET /v1/status without NATS: %d %.300s, want it to say the API is not connected", code, body)
	}

	ns.Restart(t)
	until("a live status once NATS is back", func(st api.Status) bool { return st.Stale == "" })
}

// The page in a browser: its "live" mark turns into the words that the API is not connected to
// NATS, and back.
func TestTheStatusPageInABrowserSaysWhenTheAPIIsNotConnectedToNATS(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium: apt-get install chromium (go tool task test installs it where apt works)")
	}
	f := startOnFiles(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")) // no lookups off loopback
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(f.url+"/"), chromedp.WaitVisible("header span.on")); err != nil {
		t.Fatalf("open the status page and see it live: %v", err)
	}
	f.ns.Stop()
	if err := chromedp.Do(ctx, chromedp.WaitVisible("header span.stale")); err != nil {
		t.Fatalf("the page once NATS stopped: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("header span"))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	if !strings.Contains(text, "the API is not connected to NATS") {
		t.Errorf("the page once NATS stopped says %q, want that the API is not connected to NATS", text)
	}
	f.ns.Restart(t)
	if err := chromedp.Do(ctx, chromedp.WaitVisible("header span.on")); err != nil {
		t.Fatalf("the page once NATS is back: %v", err)
	}
}

// An API that has not read STATE to its end says so, rather than showing the states it has
// not read yet (every one unknown) as live: restarted while JetStream did not answer, the page
// showed every endpoint grey and "live". Once it has read STATE, the page is live.
func TestTheStatusPageSaysWhenTheAPIHasNotReadSTATEYet(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{Files: true})
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{ns: ns}
	f.transition(t, "w1", events.StatusDown)
	ns.StopJetStream(t)
	f = serveAPI(t, ns)
	code, body := f.do(t, "GET", "/v1/status", f.read, "")
	if code != http.StatusOK || !strings.Contains(body, `"stale": "the API has not read STATE to its end yet`) {
		t.Errorf("GET /v1/status before the API read STATE: %d %.400s, want it to say so", code, body)
	}
	ns.Stop()
	ns.Restart(t)
	eventstest.Eventually(t, 20*time.Second, func() bool {
		code, body = f.do(t, "GET", "/v1/status", f.read, "")
		return code == http.StatusOK && !strings.Contains(body, `"stale"`) && strings.Contains(body, `"status": "down"`)
	}, "the API does not show w1 down, live, once JetStream is back: %d %.400s", &code, &body)
}

// An API that lost NATS and got back a connection on which JetStream does not answer (a node
// restarted before its streams, a cluster electing leaders) has not read what STATE stored
// meanwhile: it says so, as it does until it first read STATE, where it showed the states it had
// before the loss as live. Once JetStream answers and the API has read STATE to its end, the
// page is live again.
func TestTheStatusPageSaysWhenTheAPIReconnectedWithoutReadingSTATE(t *testing.T) {
	f := startOnFiles(t)
	var code int
	var body string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, body = f.do(t, "GET", "/v1/status", f.read, "")
		return code == http.StatusOK && !strings.Contains(body, `"stale"`)
	}, "the API is not live: %d %.400s", &code, &body)

	port, before := f.ns.Server.Addr().(*net.TCPAddr).Port, f.ns.Conn.Stats().Reconnects
	f.ns.Stop()
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	t.Cleanup(plain.Shutdown)
	if !plain.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server without JetStream not ready in 10s")
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return f.ns.Conn.IsConnected() && f.ns.Conn.Stats().Reconnects > before },
		"the API did not reconnect to the server without JetStream")
	code, body = f.do(t, "GET", "/v1/status", f.read, "")
	if code != http.StatusOK || !strings.Contains(body, `"stale": "the API reconnected to NATS and has not read what STATE stored meanwhile yet`) {
		t.Errorf("GET /v1/status reconnected where JetStream does not answer: %d %.400s, want it to say so", code, body)
	}

	plain.Shutdown()
	plain.WaitForShutdown()
	f.ns.Restart(t)
	eventstest.Eventually(t, 20*time.Second, func() bool {
		code, body = f.do(t, "GET", "/v1/status", f.read, "")
		return code == http.StatusOK && !strings.Contains(body, `"stale"`)
	}, "the API is not live once JetStream is back: %d %.400s", &code, &body)
}

package api_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// slowAPI starts an API whose connection to the fixture's server goes through a link that
// answers late, with the given bound on its reads of the cluster (0: the default).
func slowAPI(t *testing.T, f *fixture, wait time.Duration) (*fixture, *eventstest.SlowLink) {
	t.Helper()
	link := eventstest.NewSlowLink(t, f.ns.URL)
	_, js := eventstest.ConnectJS(t, link.URL)
	srv, err := api.Listen(api.Options{JS: js, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		ClusterWait: wait, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-slow-cluster", srv.Run)
	slow := *f
	slow.srv, slow.url = srv, "http://"+srv.Addr()
	return &slow, link
}

// A loaded or distant cluster answers each request 1.1 s late: the configuration, its history,
// a plan, the conflict check of an apply and the overrides wait for it, where the API's reads of
// the last events gave up after a second and answered 502 with a Go error. They run at once, as
// several clients' would.
func TestTheConfigAndOverrideEndpointsWaitForAClusterThatAnswersAfterASecond(t *testing.T) {
	f, link := slowAPI(t, start(t), 0)
	link.Delay(1100*time.Millisecond, 0)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	var wg sync.WaitGroup
	for _, c := range []struct {
		name, method, path, token, body string
		code                            int
		want                            string
	}{
		{"config", "GET", "/v1/config", f.read, "", http.StatusOK, `"version": 1`},
		{"history", "GET", "/v1/config/history", f.read, "", http.StatusOK, `"version": 1`},
		{"plan", "POST", "/v1/config/plan", f.read, next, http.StatusOK, `"path": "apps[shop].pools[east].endpoints[e1].address"`},
		{"stale apply", "POST", "/v1/config/apply?expect_version=0", f.write, next, http.StatusConflict, "version 1 is active"},
		{"overrides", "GET", "/v1/overrides", f.read, "", http.StatusOK, `"overrides": []`},
		{"override clear", "DELETE", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "reason": "done"}`, http.StatusNotFound, "no override"},
	} {
		wg.Go(func() {
			if code, body := f.do(t, c.method, c.path, c.token, c.body); code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %s, want %d and %s", c.name, code, body, c.code, c.want)
			}
		})
	}
	wg.Wait()
}

// A cluster that does not answer within the API's bound is answered 504, naming what did not
// answer and how long the API waited, never a 500 or a Go error alone; and nothing is applied.
func TestTheConfigAndOverrideEndpointsAnswer504NamingTheClusterWhenItDoesNotAnswerInTime(t *testing.T) {
	base := start(t)
	f, link := slowAPI(t, base, 500*time.Millisecond)
	link.Delay(time.Hour, 0)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	for _, c := range []struct{ name, method, path, token, body string }{
		{"config", "GET", "/v1/config", f.read, ""},
		{"history", "GET", "/v1/config/history", f.read, ""},
		{"plan", "POST", "/v1/config/plan", f.read, next},
		{"apply", "POST", "/v1/config/apply?expect_version=1", f.write, next},
		{"overrides", "GET", "/v1/overrides", f.read, ""},
		{"override set", "POST", "/v1/overrides", f.write, `{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`},
	} {
		code, body := f.do(t, c.method, c.path, c.token, c.body)
		if code != http.StatusGatewayTimeout || !strings.Contains(body, "the NATS cluster did not answer within 500ms") {
			t.Errorf("%s: %d %s, want 504 naming the cluster and the 500ms waited", c.name, code, body)
		}
	}
	if code, body := base.do(t, "GET", "/v1/config/history", base.read, ""); code != http.StatusOK || strings.Count(body, `"version"`) != 1 {
		t.Errorf("history through an API with a prompt cluster: %d %s, want version 1 only", code, body)
	}
}

// An apply the cluster did not answer in time says whether the version may have been stored:
// not when the API gave up reading the active version (nothing was sent; before, it said "it may
// yet be stored"), and so when the version was sent and its answer did not come, with the way to
// tell: applying the same document again stores nothing if it was.
func TestAnApplyTheClusterDidNotAnswerSaysMayHaveBeenStoredOnlyOnceTheVersionWasSent(t *testing.T) {
	base := start(t)
	f, link := slowAPI(t, base, 500*time.Millisecond)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	link.Delay(time.Hour, 0)
	code, body := f.do(t, "POST", "/v1/config/apply", f.write, next)
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "nothing stored") || strings.Contains(body, "may") {
		t.Errorf("apply unanswered before it sent the version: %d %s, want 504 saying nothing was stored", code, body)
	}

	f, _ = slowAPI(t, base, 500*time.Millisecond) // a prompt link: the first holds what it was sent for an hour
	base.configAnswers(t, false)                  // CONFIG stores what it is sent and answers nothing
	code, body = f.do(t, "POST", "/v1/config/apply", f.write, next)
	base.configAnswers(t, true)
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "may have been stored") || !strings.Contains(body, "stores nothing if it was") {
		t.Errorf("apply whose answer did not come: %d %s, want 504 saying it may have been stored", code, body)
	}
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, next); code != http.StatusOK || !strings.Contains(body, `"unchanged": true`) {
		t.Errorf("the same apply again: %d %s, want 200 unchanged", code, body)
	}
}

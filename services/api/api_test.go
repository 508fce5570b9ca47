package api_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/override"
	"github.com/rs/zerolog"
)

const doc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.12:80"}]}
`

type fixture struct {
	ns          *eventstest.Server
	srv         *api.Server
	url         string
	read, write string
	tokens      *api.Tokens
}

func start(t *testing.T) *fixture {
	t.Helper()
	ns := eventstest.Start(t)
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	read, err := api.AddToken(path, "viewer", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	write, err := api.AddToken(path, "ops", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file: %v, mode %v, want 0600", err, fi.Mode())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), read) || strings.Contains(string(b), write) {
		t.Fatal("the tokens file holds a token in clear")
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
	eventstest.Run(t, "api", srv.Run)
	return &fixture{ns: ns, srv: srv, url: "http://" + srv.Addr(), read: read, write: write, tokens: toks}
}

func (f *fixture) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) transition(t *testing.T, endpoint string, to events.Status) {
	t.Helper()
	typ := events.TypeEndpointUp
	if to == events.StatusDown {
		typ = events.TypeEndpointDown
	}
	pool := map[string]string{"w1": "west", "e1": "east"}[endpoint]
	e, err := events.New(typ, "test", time.Now(), events.Transition{App: "shop", Pool: pool, Endpoint: endpoint, To: to,
		Reason: "test", Votes: []events.Vote{{Region: "us-west", Status: to}, {Region: "us-east", Status: to}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), f.ns.JS, events.EndpointStateSubject("shop", pool, endpoint), e); err != nil {
		t.Fatal(err)
	}
}

func TestARequestWithoutAValidTokenIsRefusedWith401(t *testing.T) {
	f := start(t)
	const unknown = `an unknown bearer token: the API's tokens file holds no such token (one detour token create adds is taken within a second, without a restart)`
	// A secret of another form matches no line of the file, whatever hash it holds of it: adding
	// a line, which the message for an unknown token suggests, does not help.
	const notDetours = `not a Detour token: the API takes only the tokens detour token create makes, which begin with detour_`
	for _, tt := range []struct{ token, want string }{
		{"", `a bearer token is required: Authorization: Bearer detour_…`},
		{"detour_not-a-token", unknown},
		{"Basic abc", notDetours},
		{"a-secret-of-my-own", notDetours},
		{`"` + f.read + `"`, notDetours},
	} {
		code, body := f.do(t, "GET", "/v1/apps", tt.token, "")
		if code != http.StatusUnauthorized || !strings.Contains(body, `"error": "`+tt.want+`"`) {
			t.Errorf("token %q: %d %s, want 401 with %q", tt.token, code, body, tt.want)
		}
	}
	if code, _ := f.do(t, "GET", "/v1/apps", f.read, ""); code != http.StatusOK {
		t.Errorf("read token: %d, want 200", code)
	}
}

func TestAReadTokenCannotWrite(t *testing.T) {
	f := start(t)
	body := `{"app":"shop","pool":"west","action":"force_down","reason":"maintenance"}`
	code, resp := f.do(t, "POST", "/v1/overrides", f.read, body)
	if code != http.StatusForbidden || !strings.Contains(resp, `token \"viewer\" has read scope`) {
		t.Fatalf("override with a read token: %d %s, want 403", code, resp)
	}
	if code, resp := f.do(t, "POST", "/v1/config/apply", f.read, doc); code != http.StatusForbidden {
		t.Errorf("apply with a read token: %d %s, want 403", code, resp)
	}
	code, resp = f.do(t, "POST", "/v1/overrides", f.write, body)
	if code != http.StatusOK {
		t.Fatalf("override with a write token: %d %s", code, resp)
	}
	code, resp = f.do(t, "GET", "/v1/overrides", f.read, "")
	if code != http.StatusOK || !strings.Contains(resp, `"by": "api/ops"`) || !strings.Contains(resp, `"action": "force_down"`) {
		t.Errorf("overrides: %d %s, want the override set by api/ops", code, resp)
	}
	if code, resp := f.do(t, "DELETE", "/v1/overrides", f.write, `{"app":"shop","pool":"west","reason":"done"}`); code != http.StatusOK {
		t.Errorf("clear: %d %s", code, resp)
	}
	if code, resp := f.do(t, "DELETE", "/v1/overrides", f.write, `{"app":"shop","pool":"west","reason":"done"}`); code != http.StatusNotFound {
		t.Errorf("clear again: %d %s, want 404", code, resp)
	}
	if code, resp := f.do(t, "POST", "/v1/overrides", f.write, `{"app":"shop","pool":"nope","action":"drain","reason":"x"}`); code != http.StatusUnprocessableEntity || !strings.Contains(resp, `no pool \"nope\"`) {
		t.Errorf("override of an unknown pool: %d %s, want 422 naming it", code, resp)
	}
}

func TestTheTransitionHistoryIsFilteredAndPaginatedNewestFirst(t *testing.T) {
	f := start(t)
	for i := range 7 {
		to := events.StatusDown
		if i%2 == 1 {
			to = events.StatusUp
		}
		f.transition(t, "w1", to)
	}
	f.transition(t, "e1", events.StatusDown)
	type page struct {
		Transitions []api.Transition `json:"transitions"`
		Next        string           `json:"next"`
	}
	get := func(path string) page {
		var p page
		code, body := f.do(t, "GET", path, f.read, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return len(get("/v1/transitions?limit=100").Transitions) == 8
	}, "the API to hold the 8 transitions")

	var seqs []uint64
	path := "/v1/transitions?endpoint=w1&limit=3"
	pages := 0
	for path != "" {
		p := get(path)
		pages++
		for _, tr := range p.Transitions {
			if tr.Endpoint != "w1" || tr.Kind != "endpoint" {
				t.Errorf("filter endpoint=w1 returned %+v", tr)
			}
			seqs = append(seqs, tr.Seq)
		}
		path = p.Next
	}
	if pages != 3 || len(seqs) != 7 {
		t.Fatalf("%d pages, %d transitions (%v), want 3 pages of 3, 3 and 1", pages, len(seqs), seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] >= seqs[i-1] {
			t.Errorf("not newest first: %v", seqs)
		}
	}
	if downs := get("/v1/transitions?endpoint=w1&to=down").Transitions; len(downs) != 4 {
		t.Errorf("to=down: %d transitions, want 4", len(downs))
	}
	if code, body := f.do(t, "GET", "/v1/transitions?limit=0", f.read, ""); code != http.StatusBadRequest || !strings.Contains(body, "limit: want a whole number from 1 to 1000") {
		t.Errorf("limit=0: %d %s", code, body)
	}
}

func TestAppsShowTheCurrentAnswerAndEachRegionsVote(t *testing.T) {
	f := start(t)
	f.transition(t, "w1", events.StatusDown)
	var app api.App
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, body := f.do(t, "GET", "/v1/apps/shop", f.read, "")
		_ = json.Unmarshal([]byte(body), &app)
		return len(app.Answer.A) == 1 && app.Answer.A[0] == "127.0.0.12"
	}, "shop to answer east once west is down: %+v", &app)
	w1 := app.Pools[0].Endpoints[0]
	if w1.Status != "down" || len(w1.Votes) != 2 || w1.Votes[0].Region != "us-west" || w1.Votes[0].Status != "down" {
		t.Errorf("w1 = %+v, want down with both regions' votes", w1)
	}
	if code, _ := f.do(t, "GET", "/v1/apps/nope", f.read, ""); code != http.StatusNotFound {
		t.Errorf("unknown app: %d, want 404", code)
	}
}

func TestConfigApplyThroughTheAPIRefusesAStaleVersionAndABadDocument(t *testing.T) {
	f := start(t)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	code, body := f.do(t, "POST", "/v1/config/plan", f.read, next)
	if code != http.StatusOK || !strings.Contains(body, `"path": "apps[shop].pools[east].endpoints[e1].address"`) {
		t.Errorf("plan: %d %s", code, body)
	}
	code, body = f.do(t, "POST", "/v1/config/apply?expect_version=1&message=move+east", f.write, next)
	if code != http.StatusOK || !strings.Contains(body, `"version": 2`) || !strings.Contains(body, `"by": "api/ops"`) {
		t.Fatalf("apply: %d %s", code, body)
	}
	code, body = f.do(t, "POST", "/v1/config/apply?expect_version=1", f.write, doc)
	if code != http.StatusConflict || !strings.Contains(body, "version 2 is active") {
		t.Errorf("stale apply: %d %s, want 409", code, body)
	}
	code, body = f.do(t, "POST", "/v1/config/apply", f.write, "zones: []\napps: []\nbogus: 1\n")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "bogus") {
		t.Errorf("bad document: %d %s, want 422 naming the problem", code, body)
	}
	code, body = f.do(t, "GET", "/v1/config/history", f.read, "")
	if code != http.StatusOK || strings.Count(body, `"version"`) != 2 || !strings.Contains(body, `"message": "move east"`) {
		t.Errorf("history: %d %s", code, body)
	}
}

func TestTheStatusPageNeedsNoTokenOnLoopbackOnly(t *testing.T) {
	f := start(t)
	code, body := f.do(t, "GET", "/", "", "")
	if code != http.StatusOK || !strings.Contains(body, "<title>Detour status</title>") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page from loopback: %d, want 200 and no external asset", code)
	}
	for _, path := range []string{"/", "/status/events"} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "192.0.2.7:40000"
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s from 192.0.2.7 without a token: %d, want 401", path, rec.Code)
		}
	}
}

// A web page the operator visits can point its own name at 127.0.0.1 (DNS rebinding) and read
// what loopback may read; its requests name that host, not a loopback one.
func TestTheStatusPageNeedsATokenFromLoopbackUnderAnotherHostName(t *testing.T) {
	f := start(t)
	for _, c := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:8088", http.StatusOK},
		{"localhost:8088", http.StatusOK},
		{"[::1]:8088", http.StatusOK},
		{"127.0.0.1", http.StatusOK},
		{"rebind.attacker.example:8088", http.StatusUnauthorized},
		{"status.example", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Host = c.host
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("page from loopback with Host %s: %d, want %d", c.host, rec.Code, c.want)
		}
	}
}

// A reverse proxy on the controller's host (TLS in front of 127.0.0.1:8088) makes every
// request it forwards come from loopback, and may name a loopback host: one that says it
// forwarded the request came from elsewhere, and needs a token.
func TestTheStatusPageNeedsATokenForARequestAProxyForwarded(t *testing.T) {
	f := start(t)
	for _, h := range []struct{ name, value string }{
		{"X-Forwarded-For", "203.0.113.9"},
		{"Forwarded", "for=203.0.113.9;proto=https"},
		{"X-Real-Ip", "203.0.113.9"},
	} {
		for _, path := range []string{"/", "/status/events"} {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the event stream, let in, ends after its first event
			req := httptest.NewRequestWithContext(ctx, "GET", path, nil)
			req.RemoteAddr, req.Host = "127.0.0.1:40000", "127.0.0.1:8088"
			req.Header.Set(h.name, h.value)
			rec := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s from loopback with %s: %s: %d, want 401", path, h.name, h.value, rec.Code)
			}
		}
	}
}

func ExampleNewToken() {
	secret, line, _ := api.NewToken("ci", api.ScopeRead)
	fmt.Println(strings.HasPrefix(secret, "detour_"), strings.HasPrefix(line, "ci read "), len(line))
	// Output: true true 73
}

// The DNS servers compile the zones of every version and keep the last good one when a version
// does not compile, while the other roles take it: a document they refuse must be refused whole
// by the API, as detour apply and detour check refuse it, not stored as the active version.
func TestConfigApplyThroughTheAPIRefusesAZoneRecordTheDNSServerCannotServe(t *testing.T) {
	f := start(t)
	bad := strings.Replace(doc, "{name: demo.test}", `{name: demo.test, records: ["www IN A not-an-address"]}`, 1)
	for _, path := range []string{"/v1/config/plan", "/v1/config/apply"} {
		code, body := f.do(t, "POST", path, f.write, bad)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "zones[0].records[0]") {
			t.Errorf("POST %s of a bad record: %d %s, want 422 naming zones[0].records[0]", path, code, body)
		}
	}
	if code, body := f.do(t, "GET", "/v1/config/history", f.read, ""); code != http.StatusOK || strings.Count(body, `"version"`) != 1 {
		t.Errorf("history after a refused apply: %d %s, want version 1 alone", code, body)
	}
}

// Two operators clearing one override at once: one clears it, the other is told it changed
// under it (409) or is gone (404), not that NATS failed (502).
func TestTwoClearsOfOneOverrideAtOnceAnswerOneSuccessAndAConflict(t *testing.T) {
	f := start(t)
	set := `{"app":"shop","pool":"west","action":"drain","reason":"maintenance"}`
	clear := `{"app":"shop","pool":"west","reason":"done"}`
	for round := range 30 {
		if code, body := f.do(t, "POST", "/v1/overrides", f.write, set); code != http.StatusOK {
			t.Fatalf("round %d: set: %d %s", round, code, body)
		}
		codes := make(chan string, 2)
		for range 2 {
			go func() {
				req, _ := http.NewRequest("DELETE", f.url+"/v1/overrides", strings.NewReader(clear))
				req.Header.Set("Authorization", "Bearer "+f.write)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					codes <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes <- fmt.Sprintf("%d %s", resp.StatusCode, b)
			}()
		}
		a, b := <-codes, <-codes
		ok := 0
		for _, r := range []string{a, b} {
			switch {
			case strings.HasPrefix(r, "200 "):
				ok++
			case strings.HasPrefix(r, "404 "), strings.HasPrefix(r, "409 "):
			default:
				t.Fatalf("round %d: a clear answered %s, want 200, or 404 or 409 for the second", round, r)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d clears succeeded (%s; %s), want 1", round, ok, a, b)
		}
	}
}

// A body within the API's bound that NATS cannot carry in one message is the client's to make
// smaller (413), not a failure upstream (502).
func TestABodyLargerThanNATSCarriesIsRefusedAsTooLarge(t *testing.T) {
	f := start(t)
	big := doc + "# " + strings.Repeat("x", 2<<20) + "\n"
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("apply of a 2 MiB document: %d %s, want 413", code, body)
	}
	reason := strings.Repeat("x", 2<<20)
	if code, body := f.do(t, "POST", "/v1/overrides", f.write, `{"app":"shop","pool":"west","action":"drain","reason":"`+reason+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("override with a 2 MiB reason: %d %.300s, want 413", code, body)
	}
}

// A known resource asked with a method it does not take answers 405 with Allow, as net/http's
// mux does, so a client that PUTs an override learns to POST it, not that it does not exist.
func TestAKnownResourceAskedWithAnotherMethodAnswers405WithAllow(t *testing.T) {
	f := start(t)
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/v1/overrides", "GET, HEAD, POST, DELETE"},
		{"GET", "/v1/config/apply", "POST"},
		{"DELETE", "/v1/apps/shop", "GET, HEAD"},
	} {
		req, _ := http.NewRequest(c.method, f.url+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+f.read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), b, c.allow)
		}
	}
	if code, _ := f.do(t, "PUT", "/v1/overrides", "", ""); code != http.StatusUnauthorized {
		t.Errorf("PUT /v1/overrides without a token: %d, want 401", code)
	}
	if code, _ := f.do(t, "GET", "/v1/nope", f.read, ""); code != http.StatusNotFound {
		t.Errorf("GET /v1/nope: %d, want 404", code)
	}
}

// A filter kind or to the history never holds is a typo: 400 naming it, not an empty page that
// reads as "nothing happened".
func TestATransitionKindOrToThatDoesNotExistIsRefusedNamingTheField(t *testing.T) {
	f := start(t)
	code, body := f.do(t, "GET", "/v1/transitions?kind=endpoints", f.read, "")
	if code != http.StatusBadRequest || !strings.Contains(body, `kind: want endpoint, pool, edge, override or holddown, got \"endpoints\"`) {
		t.Errorf("kind=endpoints: %d %s, want 400 naming kind", code, body)
	}
	code, body = f.do(t, "GET", "/v1/transitions?kind=pool&to=Drained", f.read, "")
	if code != http.StatusBadRequest || !strings.Contains(body, `to: want up, down, drained, force_up, force_down, drain, cleared, started or cancelled, got \"Drained\"`) {
		t.Errorf("to=Drained: %d %s, want 400 naming to", code, body)
	}
	for _, k := range []string{"endpoint", "pool", "edge", "override"} {
		if code, body := f.do(t, "GET", "/v1/transitions?kind="+k, f.read, ""); code != http.StatusOK {
			t.Errorf("kind=%s: %d %s, want 200", k, code, body)
		}
	}
}

// A to that the kind asked never has is as much a typo as one no transition has: an override
// that drains is to "drain", and kind=override&to=drained answered an empty page, read as no
// override having drained anything. It is refused naming what that kind is to.
func TestATransitionToItsKindNeverHasIsRefusedNamingWhatItIsTo(t *testing.T) {
	f := start(t)
	for _, c := range []struct{ query, want string }{
		{"kind=override&to=drained", `to: override transitions are to force_up, force_down, drain or cleared, got \"drained\"`},
		{"kind=pool&to=drained", `to: pool transitions are to up or down, got \"drained\"`},
		{"kind=holddown&to=up", `to: holddown transitions are to started or cancelled, got \"up\"`},
		{"kind=endpoint&to=cleared", `to: endpoint transitions are to up, down or drained, got \"cleared\"`},
	} {
		if code, body := f.do(t, "GET", "/v1/transitions?"+c.query, f.read, ""); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 with %s", c.query, code, body, c.want)
		}
	}
	for _, q := range []string{"kind=endpoint&to=drained", "kind=override&to=drain", "kind=holddown&to=started", "kind=edge&to=down", "to=drained"} {
		if code, body := f.do(t, "GET", "/v1/transitions?"+q, f.read, ""); code != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", q, code, body)
		}
	}
}

// The scheme of an Authorization header is case-insensitive (RFC 9110 §11.1): clients that
// send "bearer" are as authenticated as those that send "Bearer".
func TestTheBearerSchemeIsCaseInsensitive(t *testing.T) {
	f := start(t)
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest("GET", f.url+"/v1/apps", nil)
		req.Header.Set("Authorization", scheme+" "+f.read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %s <read token>: %d, want 200", scheme, resp.StatusCode)
		}
	}
}

// A script that applies a configuration and at once overrides a pool it adds is not told the
// pool does not exist: the API validates against what it applied, not what it read back later.
func TestAnOverrideOfAPoolJustAppliedIsAccepted(t *testing.T) {
	f := start(t)
	for i := range 10 {
		pool := fmt.Sprintf("north%d", i)
		next := strings.Replace(doc, "      - {name: east,", fmt.Sprintf("      - {name: %s, region: us-north, endpoints: [{name: n1, address: \"127.0.0.13:80\"}]}\n      - {name: east,", pool), 1)
		if code, body := f.do(t, "POST", "/v1/config/apply", f.write, next); code != http.StatusOK {
			t.Fatalf("apply adding %s: %d %s", pool, code, body)
		}
		body := fmt.Sprintf(`{"app":"shop","pool":%q,"action":"drain","reason":"new"}`, pool)
		if code, resp := f.do(t, "POST", "/v1/overrides", f.write, body); code != http.StatusOK {
			t.Fatalf("override of %s just applied: %d %s, want 200", pool, code, resp)
		}
	}
}

// The apply's log line keeps both its own message and the operator's: zerolog's message field
// is "message", and a second field of that name made the line hold the key twice, so a log
// pipeline kept one of the two.
func TestTheApplyLogLineKeepsTheOperatorsMessage(t *testing.T) {
	f := start(t)
	var logs eventstest.Logs
	srv, err := api.Listen(api.Options{JS: f.ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-logged", srv.Run)
	req, _ := http.NewRequest("POST", "http://"+srv.Addr()+"/v1/config/apply?message=retire+us-west", strings.NewReader(doc+"# v2\n"))
	req.Header.Set("Authorization", "Bearer "+f.write)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "configuration applied through the api") {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatal(err)
		}
		if strings.Count(line, `"message":`) != 1 || !strings.Contains(line, "retire us-west") {
			t.Errorf("log line %s: want one message field and the operator's message under another", line)
		}
		return
	}
	t.Errorf("no apply logged: %s", logs.String())
}

// An endpoint named _pool would share its override subject with its pool's own override
// (detour.state.override.<app>.<pool>._pool): forcing that one endpoint down would force the
// whole pool down. The name is refused, naming the field.
func TestAnEndpointNamedAsThePoolsOverrideIsRefused(t *testing.T) {
	f := start(t)
	next := strings.Replace(doc, "{name: w1, address", `{name: _pool, address: "127.0.0.14:80"}, {name: w1, address`, 1)
	code, body := f.do(t, "POST", "/v1/config/apply", f.write, next)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `apps[0].pools[0].endpoints[0].name: \"_pool\" is reserved`) {
		t.Errorf("apply of an endpoint named _pool: %d %s, want 422 naming apps[0].pools[0].endpoints[0].name", code, body)
	}
}

// A connection that made a request and then sends nothing is closed once it has been idle for
// IdleTimeout, token or not, so that idle connections cannot pile up for ever.
func TestAnIdleKeepAliveConnectionIsClosed(t *testing.T) {
	f := start(t)
	srv, err := api.Listen(api.Options{JS: f.ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		IdleTimeout: 300 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-idle", srv.Run)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/apps HTTP/1.1\r\nHost: api.example\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Close {
		t.Fatalf("a request without a token: %d, close %v; want 401 on a connection kept alive", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection: read %v after %v, want the server to close it (EOF) after its 300ms idle timeout", err, time.Since(start))
	}
}

func TestAnOverrideOnAnEndpointTheConfigurationNoLongerHasCanBeClearedThroughTheAPI(t *testing.T) {
	f := start(t)
	o := events.Override{App: "shop", Pool: "west", Endpoint: "old", Action: events.ActionDrain, By: "ann@box", Reason: "decommission"}
	if err := override.Set(t.Context(), f.ns.JS, o); err != nil {
		t.Fatal(err)
	}
	if code, resp := f.do(t, "DELETE", "/v1/overrides", f.write, `{"app":"shop","pool":"west","endpoint":"old","reason":"gone for good"}`); code != http.StatusOK {
		t.Errorf("clear: %d %s, want 200", code, resp)
	}
	if code, resp := f.do(t, "GET", "/v1/overrides", f.read, ""); code != http.StatusOK || strings.Contains(resp, `"old"`) {
		t.Errorf("overrides after the clear: %d %s", code, resp)
	}
}

// An apply or a plan through the API tells what detour apply prints as warnings: a caller using
// the API alone (curl, a CI job) did not learn that its inline TSIG key was now in CONFIG, where
// every role may read it.
func TestAnApplyAndAPlanThroughTheAPITellTheDocumentsWarnings(t *testing.T) {
	f := start(t)
	inline := strings.Replace(doc, "{name: demo.test}", `{name: demo.test, push: {server: "192.0.2.53:53", tsig: {name: k, secret: "c2VjcmV0"}}}`, 1)
	want := "zones[0].push.tsig.secret is stored in CONFIG, where every role may read it: use secret_file or secret_env"
	for _, path := range []string{"/v1/config/plan", "/v1/config/apply"} {
		code, body := f.do(t, "POST", path, f.write, inline)
		if code != http.StatusOK || !strings.Contains(body, `"warnings"`) || !strings.Contains(body, want) {
			t.Errorf("POST %s with an inline TSIG key: %d %s, want 200 with the warning %q", path, code, body, want)
		}
	}
	code, body := f.do(t, "POST", "/v1/config/apply", f.write, doc)
	if code != http.StatusOK || strings.Contains(body, `"warnings"`) {
		t.Errorf("POST /v1/config/apply of a document without warnings: %d %s, want 200 and no warnings", code, body)
	}
}

// A body that breaks off is a bad request, not one too large: only a body over the limit is
// answered 413.
func TestAConfigBodyThatBreaksOffIsABadRequestNotOneTooLarge(t *testing.T) {
	f := start(t)
	for _, path := range []string{"/v1/config/plan", "/v1/config/apply"} {
		req := httptest.NewRequest("POST", path, io.MultiReader(strings.NewReader("zones: []\n"), iotest.ErrReader(io.ErrUnexpectedEOF)))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+f.write)
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "body: not read") {
			t.Errorf("POST %s whose body broke off: %d %s, want 400 saying the body was not read", path, rec.Code, rec.Body.String())
		}
	}
	big := "# " + strings.Repeat("x", 8<<20) + "\n" + doc
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /v1/config/apply of %d bytes: %d %.200s, want 413", len(big), code, body)
	}
}

func TestTheConfigurationShowsInlineSecretsOnlyToAWriteTokenThatAsks(t *testing.T) {
	f := start(t)
	withKey := doc + `alerts: [{name: ops, on: [failover], webhooks: [{url: "https://hooks.example.test/detour", secret: whsec-of-the-demo}]}]` + "\n"
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, withKey); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}
	for _, tt := range []struct {
		path, token string
		code        int
		want        string
	}{
		{"/v1/config", f.read, http.StatusOK, `secret: \"\u003credacted\u003e\"`},
		{"/v1/config?version=2", f.write, http.StatusOK, `secret: \"\u003credacted\u003e\"`},
		{"/v1/config?show_secrets=true", f.write, http.StatusOK, "secret: whsec-of-the-demo"},
		{"/v1/config?show_secrets=true", f.read, http.StatusForbidden, `show_secrets: token \"viewer\" has read scope; showing the secrets written inline needs write`},
		{"/v1/config?show_secrets=yes", f.write, http.StatusBadRequest, `show_secrets: want true or false, got \"yes\"`},
	} {
		code, body := f.do(t, "GET", tt.path, tt.token, "")
		if code != tt.code || !strings.Contains(body, tt.want) || strings.Contains(body, "whsec-of-the-demo") != strings.Contains(tt.want, "whsec-of-the-demo") {
			t.Errorf("GET %s: %d %s, want %d with %s", tt.path, code, body, tt.code, tt.want)
		}
	}
}

// A read token's plan must not tell whether a guessed secret is the running one: it compares
// what GET /v1/config shows a read token, and says that it did not compare the secrets. A write
// token, which may see them, is told of a change that only a secret makes.
func TestAReadTokensPlanCannotTellAGuessedSecretFromTheRunningOne(t *testing.T) {
	f := start(t)
	with := func(secret string) string {
		return doc + `alerts: [{name: ops, on: [failover], webhooks: [{url: "https://hooks.example.test/detour", secret: ` + secret + `}]}]` + "\n"
	}
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, with("whsec-of-the-demo")); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}
	const changed = `alerts[ops].webhooks: (secret) → (secret)`
	_, right := f.do(t, "POST", "/v1/config/plan", f.read, with("whsec-of-the-demo"))
	_, wrong := f.do(t, "POST", "/v1/config/plan", f.read, with("whsec-guessed"))
	if right != wrong || strings.Contains(right, "(secret)") || !strings.Contains(right, `"secrets_not_compared": true`) {
		t.Errorf("a read token's plan of the right secret:\n%s\nof a wrong one:\n%s\nwant the same, with secrets_not_compared", right, wrong)
	}
	if _, body := f.do(t, "POST", "/v1/config/plan", f.write, with("whsec-guessed")); !strings.Contains(body, `"after": "(secret)"`) || strings.Contains(body, "secrets_not_compared") {
		t.Errorf("a write token's plan of a changed secret: %s\nwant the change (%s)", body, changed)
	}
	if _, body := f.do(t, "POST", "/v1/config/plan", f.write, with("whsec-of-the-demo")); strings.Contains(body, "(secret)") {
		t.Errorf("a write token's plan of the same secret: %s\nwant no change", body)
	}
}

// The SHA-256 of a document that holds a secret written inline checks a guess of that secret
// offline (hash the redacted document with the guess put back), as a read token's plan must
// not: a read token is shown "<redacted>" in its place, in the version, the history and the
// plan, and sees the digest of a document without one.
func TestAReadTokenIsNotShownTheDigestOfADocumentWithAnInlineSecret(t *testing.T) {
	f := start(t)
	withKey := doc + `alerts: [{name: ops, on: [failover], webhooks: [{url: "https://hooks.example.test/detour", secret: whsec-of-the-demo}]}]` + "\n"
	if code, body := f.do(t, "POST", "/v1/config/apply", f.write, withKey); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}
	leaked, plain := fmt.Sprintf("%x", sha256.Sum256([]byte(withKey))), fmt.Sprintf("%x", sha256.Sum256([]byte(doc)))
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/config", ""},
		{"GET", "/v1/config?version=2", ""},
		{"GET", "/v1/config/history", ""},
		{"POST", "/v1/config/plan", withKey},
	} {
		code, body := f.do(t, r.method, r.path, f.read, r.body)
		if code != http.StatusOK || strings.Contains(body, leaked) || !strings.Contains(body, `"sha256": "\u003credacted\u003e"`) {
			t.Errorf("%s %s with a read token: %d %s\nwant 200 with the sha256 of version 2 shown as <redacted>", r.method, r.path, code, body)
		}
	}
	if _, body := f.do(t, "GET", "/v1/config/history", f.read, ""); !strings.Contains(body, plain) {
		t.Errorf("history with a read token: %s\nwant the sha256 of version 1, which holds no secret", body)
	}
	if _, body := f.do(t, "GET", "/v1/config/history", f.write, ""); !strings.Contains(body, leaked) {
		t.Errorf("history with a write token: %s\nwant the sha256 of version 2", body)
	}
	if _, body := f.do(t, "GET", "/v1/config?show_secrets=true", f.write, ""); !strings.Contains(body, leaked) {
		t.Errorf("the version with its secrets, to a write token: %s\nwant its sha256", body)
	}
}

package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// A query parameter a request does not take is refused, naming it, and nothing is done: a
// misspelt expect_version was ignored, and the apply it was to guard stored over whatever
// version was active; a misspelt version showed the active version as if it were the one asked.
func TestAQueryParameterARequestDoesNotTakeIsRefusedNamingIt(t *testing.T) {
	f := start(t)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	for _, c := range []struct{ method, path, token, body, want string }{
		{"POST", "/v1/config/apply?expect-version=7", f.write, next,
			`query: unknown parameter \"expect-version\": POST /v1/config/apply takes expect_version, message, force`},
		{"POST", "/v1/config/apply?message=x;expect_version=7", f.write, next, `query: invalid semicolon separator in query`},
		{"GET", "/v1/config?versoin=1", f.read, "", `query: unknown parameter \"versoin\": GET /v1/config takes version, show_secrets`},
		{"GET", "/v1/transitions?knd=pool", f.read, "",
			`query: unknown parameter \"knd\": GET /v1/transitions takes kind, app, pool, endpoint, edge, to, limit, before`},
	} {
		code, body := f.do(t, c.method, c.path, c.token, c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want 400 with %s", c.method, c.path, code, body, c.want)
		}
	}
	code, body := f.do(t, "GET", "/v1/config/history", f.read, "")
	if code != http.StatusOK || strings.Count(body, `"version"`) != 1 {
		t.Errorf("history after the refused applies: %d %s, want version 1 alone", code, body)
	}
	code, body = f.do(t, "GET", "/v1/transitions?kind=pool&limit=5&before=9", f.read, "")
	if code != http.StatusOK {
		t.Errorf("transitions with the parameters it takes: %d %s, want 200", code, body)
	}
}

// A write that takes no query parameter refuses one, and does nothing: POST
// /v1/overrides?dry_run=true set the override it was to try, and DELETE /v1/overrides?endpoint=w1
// with a body naming the pool alone cleared the pool's override, not the endpoint's.
func TestAQueryParameterToAWriteThatTakesNoneIsRefused(t *testing.T) {
	f := start(t)
	const set = `{"app":"shop","pool":"west","action":"drain","reason":"maintenance"}`
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/overrides?dry_run=true", set, `query: unknown parameter \"dry_run\": POST /v1/overrides takes no query parameter`},
		{"DELETE", "/v1/overrides?endpoint=w1", `{"app":"shop","pool":"west","reason":"done"}`,
			`query: unknown parameter \"endpoint\": DELETE /v1/overrides takes no query parameter`},
		{"POST", "/v1/drills/d1/rollback?force=true", "", `query: unknown parameter \"force\": POST /v1/drills/d1/rollback takes no query parameter`},
	} {
		code, body := f.do(t, c.method, c.path, f.write, c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want 400 with %s", c.method, c.path, code, body, c.want)
		}
	}
	if code, body := f.do(t, "GET", "/v1/overrides", f.read, ""); code != http.StatusOK || strings.Contains(body, `"app"`) {
		t.Errorf("overrides after the refused writes: %d %s, want none", code, body)
	}
}

package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// secondDoc is a YAML document after doc: a webhook's secret written inline, in a document of its
// own.
const secondDoc = "---\nalerts: [{name: old, on: [failover], webhooks: [{url: https://h.test/a, secret: whsec-second}]}]\n"

// An apply whose body holds a second YAML document is refused whole, naming where it begins: the
// roles read the first alone, so a secret in the second was stored where they never used it.
func TestAnApplyOfASecondYAMLDocumentIsRefused(t *testing.T) {
	f := start(t)
	code, body := f.do(t, "POST", "/v1/config/apply", f.write, doc+secondDoc)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "a configuration is one YAML document: another begins on line 9") {
		t.Errorf("apply of two documents: %d %s, want 422 naming the second", code, body)
	}
	if code, body := f.do(t, "GET", "/v1/config/history", f.write, ""); code != http.StatusOK || strings.Count(body, `"version"`) != 1 {
		t.Errorf("history: %d %s, want version 1 alone", code, body)
	}
}

// A version applied before a second document was refused may hold one, with a secret in it and
// none in the first: the API shows nothing of the second, and so, for a read token, not its
// digest either, which would check a guessed secret offline. Its digest was shown, as the
// secrets of the first document alone were counted.
func TestTheDigestOfAVersionWithASecretInASecondDocumentIsRedactedForAReadToken(t *testing.T) {
	f := start(t)
	legacy := doc + secondDoc
	sum := sha256.Sum256([]byte(legacy))
	digest := hex.EncodeToString(sum[:])
	e, err := events.New(events.TypeConfigApplied, "test", time.Now(), events.ConfigApplied{Document: legacy, SHA256: digest, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(t.Context(), f.ns.JS, events.SubjectConfigDoc, e); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, method, path, body string }{
		{"config", "GET", "/v1/config", ""},
		{"history", "GET", "/v1/config/history", ""},
		{"plan", "POST", "/v1/config/plan", doc},
	} {
		code, body := f.do(t, c.method, c.path, f.read, c.body)
		if code != http.StatusOK || strings.Contains(body, digest) || strings.Contains(body, "whsec-second") || !strings.Contains(body, `"sha256": "\u003credacted\u003e"`) {
			t.Errorf("%s with a read token: %d %s, want the version's sha256 <redacted>", c.name, code, body)
		}
	}
	if code, body := f.do(t, "GET", "/v1/config?show_secrets=true", f.write, ""); code != http.StatusOK || !strings.Contains(body, digest) {
		t.Errorf("config with its secrets shown: %d %s, want its sha256 %s", code, body, digest)
	}
}

package api_test

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/api"
)

// FuzzDecodeOverride: any body is refused with an error or yields an override whose names are
// subject tokens and whose action is known.
func FuzzDecodeOverride(f *testing.F) {
	f.Add([]byte(`{"app":"shop","pool":"west","action":"force_down","reason":"maintenance"}`), false)
	f.Add([]byte(`{"app":"shop","pool":"west","endpoint":"w1","reason":"done"}`), true)
	f.Add([]byte(`{"app":"a.b","pool":"*","action":"x"}{}`), false)
	f.Add([]byte(`[1,2,3]`), true)
	f.Fuzz(func(t *testing.T, body []byte, clearing bool) {
		o, err := api.DecodeOverride(strings.NewReader(string(body)), "api/fuzz", clearing)
		if err != nil {
			return
		}
		if !events.ValidToken(o.App) || !events.ValidToken(o.Pool) || (o.Endpoint != "" && !events.ValidToken(o.Endpoint)) {
			t.Fatalf("accepted names that are no subject tokens: %+v", o)
		}
		if clearing != (o.Action == "") || strings.TrimSpace(o.Reason) == "" || o.By != "api/fuzz" {
			t.Fatalf("accepted %+v (clearing %v)", o, clearing)
		}
	})
}

// FuzzParseTokens: any tokens file is refused or parsed without a crash, and a parsed file
// accepts no secret without the detour_ prefix.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("ops write 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n# comment\n"))
	f.Add([]byte("a b c\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		toks, err := api.ParseTokens(doc)
		if err != nil {
			return
		}
		if _, ok := toks.Check("test"); ok {
			t.Fatal("a secret without the detour_ prefix was accepted")
		}
	})
}

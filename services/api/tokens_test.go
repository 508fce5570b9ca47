package api_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/api"
)

// An operator who edits the tokens file by hand may leave its last line without a newline;
// detour token create must not then write its line onto that one, which made the file
// unreadable and the controller unable to start.
func TestATokenAddedToAFileEditedWithoutAFinalNewlineIsReadWithTheOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	first, err := api.AddToken(path, "grafana", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte("# tokens of ops\n"+strings.TrimSuffix(string(b), "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := api.AddToken(path, "ci", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatalf("the file after detour token create: %v", err)
	}
	for _, c := range []struct{ secret, name, scope string }{{first, "grafana", api.ScopeRead}, {second, "ci", api.ScopeWrite}} {
		if tok, ok := toks.Check(c.secret); !ok || tok.Name != c.name || tok.Scope != c.scope {
			t.Errorf("token %s: %+v, %v; want %s of scope %s", c.name, tok, ok, c.name, c.scope)
		}
	}
}

// A name holding any space the file's reader splits on is refused, not written as a line the
// file cannot be read back with.
func TestATokenNameWithAnySpaceIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if _, err := api.AddToken(path, "ops", api.ScopeRead); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ops\r", "ops\u00a0team", "ops\vteam", "ops team"} {
		if _, err := api.AddToken(path, name, api.ScopeRead); err == nil || !strings.Contains(err.Error(), "token name: want a word without spaces") {
			t.Errorf("token name %q: %v, want it refused", name, err)
		}
	}
	if toks, err := api.LoadTokens(path); err != nil || toks.Len() != 1 {
		t.Errorf("the file after the refused names: %v, want it read with its one token", err)
	}
}

// One token on two lines has two names or scopes, and which one it is used with must not
// depend on the lines' order: such a file is refused, naming both lines, as when a write token
// is given a read line below and its write line is not removed.
func TestATokensFileWithOneTokenOnTwoLinesIsRefused(t *testing.T) {
	_, line, err := api.NewToken("ci", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	doc := line + "grafana read " + strings.Repeat("ab", 32) + "\n" + strings.Replace(line, "ci write", "ci read", 1)
	_, err = api.ParseTokens([]byte(doc))
	if want := "tokens file: line 3: the same token as line 1"; err == nil || err.Error() != want {
		t.Errorf("ParseTokens: %v, want %q", err, want)
	}
}

// A change through the API is recorded as by api/<token name>, so two tokens of one name could
// not be told apart there, nor one of them revoked by its line: a second token of a name in the
// file is refused, and the file keeps its one.
func TestASecondTokenOfANameInTheFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	first, err := api.AddToken(path, "grafana", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.AddToken(path, "grafana", api.ScopeWrite); err == nil || !strings.Contains(err.Error(), `token name: "grafana" is in `+path+` already`) {
		t.Errorf("a second token named grafana: %v, want it refused", err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil || toks.Len() != 1 {
		t.Fatalf("the file after the refused name: %v, want it read with its one token", err)
	}
	if tok, ok := toks.Check(first); !ok || tok.Scope != api.ScopeRead {
		t.Errorf("the first grafana token: %+v, %v; want it kept, of scope read", tok, ok)
	}
}

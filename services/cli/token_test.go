package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/api"
)

// A token found leaked is revoked with detour token revoke, which the running API takes without
// a restart, as it takes one detour token create adds: there was no way to revoke one but to
// edit the file and restart the controller.
func TestTokenRevokeRemovesTheTokenThatTheAPIThenRefusesWithoutARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-tokens")
	secrets := map[string]string{}
	for _, name := range []string{"ci", "grafana"} {
		code, out, errOut := run("token", "create", name, "--scope", "read", "--file", path)
		if code != 0 || !strings.Contains(out, "the API takes it within a second, without a restart") {
			t.Fatalf("token create %s: exit %d, %q %q; want 0, saying no restart is needed", name, code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		secrets[name] = lines[len(lines)-1]
	}
	code, out, errOut := run("token", "revoke", "ci", "--file", path)
	if code != 0 || out != `revoked token "ci" in `+path+`: the API refuses it within a second, without a restart`+"\n" {
		t.Fatalf("token revoke ci: exit %d, %q %q; want 0, saying no restart is needed", code, out, errOut)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := toks.Check(secrets["ci"]); ok || toks.Len() != 1 {
		t.Errorf("after revoking ci: ci taken %v, %d tokens; want ci gone and grafana alone", ok, toks.Len())
	}
	if tok, ok := toks.Check(secrets["grafana"]); !ok || tok.Name != "grafana" {
		t.Errorf("after revoking ci: grafana %+v, %v; want it kept", tok, ok)
	}
	code, _, errOut = run("token", "revoke", "ci", "--file", path)
	if code != 2 || !strings.Contains(errOut, `holds no token named "ci"`) {
		t.Errorf("token revoke ci again: exit %d, %q; want 2 saying there is none", code, errOut)
	}
}

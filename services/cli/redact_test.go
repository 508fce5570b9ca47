package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
)

func TestANATSPasswordNeverReachesTheTerminal(t *testing.T) {
	addr := eventstest.ClosedPort(t) // the connection is refused
	code, _, stderr := run("override", "list", "--nats", "nats://operator:op-s3cret@"+addr)
	if code != 1 || !strings.Contains(stderr, "nats://operator:REDACTED@"+addr) || strings.Contains(stderr, "op-s3cret") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 1 and the URL with its password redacted", code, stderr)
	}
}

func TestApplyWarnsAboutASecretWrittenInline(t *testing.T) {
	srv := eventstest.Start(t)
	path := filepath.Join(t.TempDir(), "detour.yaml")
	doc := `
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: k, secret: "c2VjcmV0"}}
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run("apply", path, "--nats", srv.URL)
	want := "detour apply: warning: zones[0].push.tsig.secret is stored in CONFIG, where every role may read it: use secret_file or secret_env"
	if code != 0 || !strings.Contains(stderr, want) || strings.Contains(stderr, "c2VjcmV0") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 0 and the warning, without the secret", code, stderr)
	}
}

func TestApplyWarnsAsDetourCheckDoesAboutWhatCannotWorkAsMeant(t *testing.T) {
	srv := eventstest.Start(t)
	path := writeFile(t, "detour.yaml", sharedIPDoc)
	_, _, checkErr := run("check", path)
	code, _, stderr := run("apply", path, "--nats", srv.URL)
	want := path + `:8: warning: apps[0].pools[1]: shares 127.0.0.1 with pool "west"`
	if code != 0 || !strings.HasPrefix(checkErr, want) || !strings.Contains(stderr, checkErr) {
		t.Errorf("detour apply: exit status %d, stderr:\n%s\nwant 0 and what detour check prints:\n%s", code, stderr, checkErr)
	}
}

// inlineSecretsDoc is planDoc with a TSIG key and a webhook's signing secret written inline.
const inlineSecretsDoc = `
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: k, secret: "dHNpZy1rZXktb2YtdGhlLWRlbW8="}}
    transfer_tsig: {name: xfr, secret: "eGZyLWtleS1vZi10aGUtZGVtbw=="}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{address: "127.0.0.11:80"}]}
alerts:
  - name: ops
    on: [failover]
    webhooks:
      - url: https://hooks.example.test/detour
        secret: whsec-of-the-demo
`

var inlineSecrets = []string{"dHNpZy1rZXktb2YtdGhlLWRlbW8=", "eGZyLWtleS1vZi10aGUtZGVtbw==", "whsec-of-the-demo"}

// leaked returns the inline secrets out holds.
func leaked(out string) []string {
	var found []string
	for _, s := range inlineSecrets {
		if strings.Contains(out, s) {
			found = append(found, s)
		}
	}
	return found
}

func TestConfigGetAndEventsShowInlineSecretsOnlyWhenAskedTo(t *testing.T) {
	srv := eventstest.Start(t)
	path := writeFile(t, "detour.yaml", inlineSecretsDoc)
	if code, out, errOut := run("apply", path, "--nats", srv.URL); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"config", "get"}, {"events", "--json", "--stream", "CONFIG"}, {"events", "--stream", "CONFIG"}} {
		code, out, errOut := run(append(args, "--nats", srv.URL)...)
		if code != 0 || len(leaked(out+errOut)) > 0 {
			t.Errorf("%v: exit %d, shows %q:\n%s%s", args, code, leaked(out+errOut), out, errOut)
		}
		shown := out
		if args[1] == "--json" {
			var line struct {
				Event struct {
					Data struct{ Document string }
				}
			}
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			shown = line.Event.Data.Document
		}
		if args[1] != "--stream" && strings.Count(shown, `secret: "<redacted>"`) != 3 {
			t.Errorf("%v: not every secret shown as <redacted>:\n%s", args, shown)
		}
	}
	for _, args := range [][]string{{"config", "get", "--show-secrets"}, {"events", "--json", "--stream", "CONFIG", "--show-secrets"}} {
		code, out, errOut := run(append(args, "--nats", srv.URL)...)
		if code != 0 || len(leaked(out)) != len(inlineSecrets) {
			t.Errorf("%v: exit %d, shows %q, want every secret:\n%s%s", args, code, leaked(out), out, errOut)
		}
	}
}

func TestADocumentShownByConfigGetIsRefusedByApplyNamingEachRedactedSecret(t *testing.T) {
	srv := eventstest.Start(t)
	if code, out, errOut := run("apply", writeFile(t, "detour.yaml", inlineSecretsDoc), "--nats", srv.URL, "-m", "with keys"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	_, shown, _ := run("config", "get", "--nats", srv.URL)
	again := writeFile(t, "shown.yaml", shown)
	const why = `: holds "<redacted>", which detour config get shows in place of a secret: write the secret, or use secret_file or secret_env`
	for _, args := range [][]string{{"apply", again, "--nats", srv.URL}, {"check", again}, {"plan", again, "--nats", srv.URL}} {
		code, out, errOut := run(args...)
		if code != 2 || !strings.Contains(errOut, again+":7: zones[0].push.tsig.secret"+why) || !strings.Contains(errOut, again+":8: zones[0].transfer_tsig.secret"+why) ||
			!strings.Contains(errOut, again+":19: alerts[0].webhooks[0].secret"+why) {
			t.Errorf("detour %s of what config get shows: exit %d, want 2 naming each secret:\n%s%s", args[0], code, out, errOut)
		}
	}
	if _, out, _ := run("config", "get", "--nats", srv.URL); !strings.Contains(out, `"with keys"`) {
		t.Errorf("the active version is no longer the one applied:\n%s", out)
	}
	_, raw, _ := run("config", "get", "--show-secrets", "--nats", srv.URL)
	if code, out, errOut := run("apply", writeFile(t, "raw.yaml", raw), "--nats", srv.URL); code != 0 {
		t.Errorf("apply of what config get --show-secrets shows: exit %d\n%s%s", code, out, errOut)
	}
}

func TestConfigGetThroughTheAPIShowsInlineSecretsOnlyWhenAskedTo(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", token)
	if code, out, errOut := run("apply", writeFile(t, "detour.yaml", inlineSecretsDoc), "--api", url); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("config", "get", "--api", url)
	if code != 0 || len(leaked(out)) > 0 || !strings.Contains(out, `secret: "<redacted>"`) {
		t.Errorf("config get --api: exit %d, shows %q:\n%s%s", code, leaked(out), out, errOut)
	}
	code, out, errOut = run("config", "get", "--show-secrets", "--api", url)
	if code != 0 || len(leaked(out)) != len(inlineSecrets) {
		t.Errorf("config get --show-secrets --api: exit %d, shows %q, want every secret:\n%s%s", code, leaked(out), out, errOut)
	}
}

// noSecretDoc has what the redaction once took for tokens: a path segment with letters and
// digits, a parameter whose name holds "sig", a header whose name holds "session".
const noSecretDoc = `zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: https, path: "/status/region-us-west-2?assign=ops", headers: {X-Session-Region: us-west-2}}
    pools: [{name: west, endpoints: [{address: "127.0.0.11:80"}]}]
alerts: [{name: ops, on: [failover], webhooks: [{url: "https://alerts.example.test/v1/build-0123456789abcdef0123"}]}]
`

func TestWhatConfigGetShowsOfAConfigurationWithoutSecretsAppliesAsItIs(t *testing.T) {
	srv := eventstest.Start(t)
	if code, out, errOut := run("apply", writeFile(t, "detour.yaml", noSecretDoc), "--nats", srv.URL); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	_, shown, _ := run("config", "get", "--nats", srv.URL)
	if strings.Contains(shown, "redacted") {
		t.Fatalf("config get redacted a configuration without a secret:\n%s", shown)
	}
	if code, out, errOut := run("apply", writeFile(t, "shown.yaml", shown), "--nats", srv.URL); code != 0 || strings.Contains(errOut, "stored in CONFIG") {
		t.Fatalf("apply of what config get shows: exit %d\n%s%s", code, out, errOut)
	}
	_, again, _ := run("config", "get", "--nats", srv.URL)
	if !strings.HasPrefix(again, "# version 2,") || !strings.HasSuffix(again, noSecretDoc) {
		t.Errorf("version 2 is\n%s\nwant the document of version 1:\n%s", again, noSecretDoc)
	}
}

package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

func TestABadAlertGroupIsRefusedWithEveryProblemNamed(t *testing.T) {
	doc := `
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts:
  - name: oncall
    on: [pool_down, everything]
    apps: [blog]
    webhooks:
      - {url: "https://user:pass@hooks.example/x"}
      - {url: "ftp://hooks.example/x", format: xml, secret: a, secret_env: B}
  - name: oncall
    on: []
    webhooks: []
`
	_, err := config.Parse("alerts.yaml", []byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`alerts[0].on[1]: want transition, pool_down, failover, edge_down or drill_result, got "everything"`,
		`alerts[0].apps[0]: no app "blog" in the configuration`,
		`alerts[0].webhooks[0].url: must not carry a user or password: sign with secret_file or secret_env instead`,
		`alerts[0].webhooks[1].url: want an http or https URL with a host`,
		`alerts[0].webhooks[1].format: want json or slack, got "xml"`,
		`alerts[0].webhooks[1]: want only one of secret_file, secret_env or secret`,
		`alerts[1].name: duplicate alert group "oncall"`,
		`alerts[1].on: want at least one of transition, pool_down, failover, edge_down, drill_result`,
		`alerts[1].webhooks: want at least one webhook`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestAnAlertGroupGetsItsDefaults(t *testing.T) {
	c, err := config.Parse("alerts.yaml", []byte(`
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts: [{name: oncall, on: [failover], webhooks: [{url: "http://127.0.0.1:9/hook"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Alerts[0]
	if a.RetryFor.String() != "10m0s" || a.Webhooks[0].Format != config.FormatJSON {
		t.Errorf("retry_for %s, format %q; want 10m and json", a.RetryFor, a.Webhooks[0].Format)
	}
	if k, err := a.Webhooks[0].Key(config.CredentialDirs{}); k != "" || err != nil {
		t.Errorf("a webhook without a secret: key %q, %v", k, err)
	}
}

func TestAnInlineWebhookSecretIsListedAmongTheInlineSecrets(t *testing.T) {
	c, err := config.Parse("alerts.yaml", []byte(`
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts: [{name: oncall, on: [failover], webhooks: [{url: "http://127.0.0.1:9/a", secret_env: HOOK}, {url: "http://127.0.0.1:9/b", secret: s3cret}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.InlineSecrets(), []string{"alerts[0].webhooks[1].secret"}; !slices.Equal(got, want) {
		t.Errorf("InlineSecrets = %v, want %v", got, want)
	}
}

func TestAWebhookURLIsGivenExactlyOneWayAndReadFromAFileOrTheEnvironment(t *testing.T) {
	hook := func(w string) string {
		return "zones: [{name: demo.test}]\napps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: \"127.0.0.1:80\"}]}]}]\n" +
			"alerts: [{name: oncall, on: [failover], webhooks: [{" + w + "}]}]\n"
	}
	for _, c := range []struct{ webhook, want string }{
		{`url_env: DETOUR_HOOK_URL`, ""},
		{`url_file: /etc/detour/hook.url`, ""},
		{`format: slack`, "alerts[0].webhooks[0]: want one of url, url_file or url_env"},
		{`url: "https://hooks.example.test/a", url_env: DETOUR_HOOK_URL`, "alerts[0].webhooks[0]: want only one of url, url_file or url_env"},
		{`url_env: "https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i"`, "alerts[0].webhooks[0].url_env: want the name of an environment variable: letters, digits and _, not first a digit"},
	} {
		_, err := config.Parse("detour.yaml", []byte(hook(c.webhook)))
		var ce *config.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("webhook {%s}: %v", c.webhook, err)
		case c.want != "" && (!errors.As(err, &ce) || !slices.Equal(ce.Problems, []string{c.want})):
			t.Errorf("webhook {%s}: err = %v, want exactly %q", c.webhook, err, c.want)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "hook.url")
	if err := os.WriteFile(file, []byte("https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DETOUR_TEST_HOOK_URL", "ftp://user:Zx9aB3cD4eF5gH6i@hooks.example.test/")
	for _, w := range []struct {
		hook      config.Webhook
		want, err string
	}{
		{config.Webhook{URLFile: file}, "https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i", ""},
		{config.Webhook{URL: "https://hooks.example.test/a"}, "https://hooks.example.test/a", ""},
		{config.Webhook{URLEnv: "DETOUR_TEST_HOOK_URL"}, "", "webhook url_env: want an http or https URL with a host, without a user or password, in $DETOUR_TEST_HOOK_URL"},
		{config.Webhook{URLEnv: "DETOUR_TEST_UNSET"}, "", "webhook url_env: $DETOUR_TEST_UNSET is not set in this process's environment"},
	} {
		got, err := w.hook.Target(credentialDirs(t, dir))
		if got != w.want || (err == nil) != (w.err == "") || (err != nil && err.Error() != w.err) {
			t.Errorf("%+v: Target() = %q, %v; want %q, %q", w.hook, got, err, w.want, w.err)
		}
	}
}

package configfile_test

import (
	"fmt"
	"testing"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/configfile"
)

// alertsDoc is a document whose alert groups are the one given.
const alertsDoc = `zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
alerts:
%s`

// refused checks doc and wants it refused with exactly want.
func refused(t *testing.T, doc, want string) {
	t.Helper()
	_, err := configfile.Check("detour.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("the document was taken, want it refused with:\n%s", want)
	}
	if err.Error() != want {
		t.Errorf("refused with:\n%s\nwant:\n%s", err, want)
	}
}

// A user who writes retry_for: 0s means no retries; the sender reads 0 as the default, 10m,
// and would retry for ten minutes (and send the alert after a controller's restart): the
// document is refused, naming the field, as Alertmanager refuses a zero repeat_interval.
func TestARetryForOfZeroIsRefusedNamingTheField(t *testing.T) {
	for _, zero := range []string{"0s", "0", "0ms"} {
		t.Run(zero, func(t *testing.T) {
			refused(t, fmt.Sprintf(alertsDoc, "  - {name: oncall, on: [transition], retry_for: "+zero+", webhooks: [{url: \"https://hooks.example.test/a\"}]}\n"),
				"detour.yaml: invalid configuration:\n"+
					"detour.yaml:8: alerts[0].retry_for: must be positive, got "+zero+": leave it out for the default, 10m; a delivery is retried, and sent after a controller's restart, within retry_for")
		})
	}
}

func TestARetryForLeftOutOrPositiveIsTaken(t *testing.T) {
	for _, g := range []string{"", "retry_for: 30s, "} {
		doc := fmt.Sprintf(alertsDoc, "  - {name: oncall, on: [transition], "+g+"webhooks: [{url: \"https://hooks.example.test/a\"}]}\n")
		if _, err := configfile.Check("detour.yaml", []byte(doc)); err != nil {
			t.Errorf("%q refused: %v", g, err)
		}
	}
}

// Two webhooks of one group at one URL share the Detour-Delivery id of each alert (it names the
// group and the URL), so a receiver that drops a repeated id keeps one, and the controllers,
// which claim each attempt by that id, make one: the document is refused, naming the second.
func TestAWebhookListedTwiceInOneGroupIsRefusedNamingTheSecond(t *testing.T) {
	for _, c := range []struct{ name, first, second, field string }{
		{"url", `url: "https://hooks.example.test/a"`, `url: "https://hooks.example.test/a", format: slack`, "url"},
		{"url_file", `url_file: /etc/detour/hook.url`, `url_file: /etc/detour/hook.url`, "url_file"},
		{"url_env", `url_env: HOOK_URL`, `url_env: HOOK_URL`, "url_env"},
	} {
		t.Run(c.name, func(t *testing.T) {
			refused(t, fmt.Sprintf(alertsDoc, "  - name: oncall\n    on: [transition]\n    webhooks:\n      - {"+c.first+"}\n      - {"+c.second+"}\n"),
				"detour.yaml: invalid configuration:\n"+
					"detour.yaml:12: alerts[0].webhooks[1]."+c.field+": the same webhook as alerts[0].webhooks[0]: their deliveries of an alert share one Detour-Delivery id, and only one is sent; list it once")
		})
	}
}

func TestOneWebhookInTwoGroupsIsTaken(t *testing.T) {
	doc := fmt.Sprintf(alertsDoc, "  - {name: oncall, on: [transition], webhooks: [{url: \"https://hooks.example.test/a\"}]}\n"+
		"  - {name: pages, on: [pool_down], webhooks: [{url: \"https://hooks.example.test/a\"}]}\n")
	if _, err := configfile.Check("detour.yaml", []byte(doc)); err != nil {
		t.Errorf("refused: %v", err)
	}
}

// The twin for webhooks whose URLs are read where the controller runs: two variables holding one
// URL are refused by detour check and detour up, which read them, without the URL.
func TestTwoWebhooksOfOneGroupReadAsOneURLAreRefusedWithoutTheURL(t *testing.T) {
	t.Setenv("HOOK_A", "https://hooks.example.test/T0/secret")
	t.Setenv("HOOK_B", "https://hooks.example.test/T0/secret")
	doc := fmt.Sprintf(alertsDoc, "  - name: oncall\n    on: [transition]\n    webhooks:\n      - {url_env: HOOK_A}\n      - {url_env: HOOK_B}\n")
	c, err := configfile.Check("detour.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	err = configfile.CheckSecrets("detour.yaml", []byte(doc), c, config.CredentialDirs{})
	want := "detour.yaml: invalid configuration:\n" +
		"detour.yaml:12: alerts[0].webhooks[1]: the same webhook as alerts[0].webhooks[0], once read: their deliveries of an alert share one Detour-Delivery id, and only one is sent; list it once"
	if err == nil || err.Error() != want {
		t.Errorf("refused with:\n%v\nwant:\n%s", err, want)
	}
}

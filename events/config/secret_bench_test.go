package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

// bigConfig is a configuration of apps×pools×endpoints endpoints (100×10×10: 10,000), each
// app's check with a credential header, a TSIG key and a webhook with its secret.
func bigConfig(b *testing.B) *config.Config {
	var doc strings.Builder
	doc.WriteString("zones:\n  - name: demo.test\n    push: {server: \"127.0.0.1:53\", tsig: {name: k, secret: c2VjcmV0}}\napps:\n")
	for a := range 100 {
		fmt.Fprintf(&doc, "  - name: app%d\n    fqdn: app%d.demo.test\n    check: {type: https, path: /healthz, headers: {Authorization: \"Bearer t%d\", Accept: text/plain}}\n    pools:\n", a, a, a)
		for p := range 10 {
			fmt.Fprintf(&doc, "      - name: p%d\n        endpoints:\n", p)
			for e := range 10 {
				fmt.Fprintf(&doc, "          - {address: \"10.%d.%d.%d:80\"}\n", a, p, e)
			}
		}
	}
	doc.WriteString("alerts: [{name: ops, on: [failover], webhooks: [{url: \"https://h.test/a?token=t\", secret: whsec}]}]\n")
	c, err := config.Parse("big.yaml", []byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkSecretWarnings10kEndpoints(b *testing.B) {
	c := bigConfig(b)
	b.ResetTimer()
	for b.Loop() {
		if len(c.SecretWarnings()) != 103 {
			b.Fatal("want 103 warnings")
		}
	}
}

func BenchmarkWithSecretsRedacted10kEndpoints(b *testing.B) {
	c := bigConfig(b)
	b.ResetTimer()
	for b.Loop() {
		if r := c.WithSecretsRedacted(); r.Apps[0].Check.Headers["Authorization"] != config.Redacted {
			b.Fatal("not redacted")
		}
	}
}

package configfile_test

import (
	"fmt"
	"testing"

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

package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAControllerServesItsAlertSendersMetrics: `detour controller --metrics-addr` serves the
// alert sender's series beside the controller's, each of its groups' at zero before any alert,
// so that an operator can alert on a webhook that fails.
func TestAControllerServesItsAlertSendersMetrics(t *testing.T) {
	r := startVersioned(t, "controller-12")
	doc := failoverDoc + "alerts:\n  - name: oncall\n    on: [pool_down]\n    webhooks: [{url: \"https://hooks.example.com/detour\"}]\n"
	if _, _, err := config.Apply(context.Background(), r.op, "detour.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	startRoleLogging(t, runController, &logs, "--nats", r.url("controller-12"), "--name", "c12", "--api-addr", "",
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json")
	addr := loggedAddr(t, &logs, "serving metrics")
	const want = `detour_alert_attempts_total{group="oncall",reason="5xx",result="abandoned"} 0`
	var got string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		got = string(body)
		return strings.Contains(got, want)
	}, "/metrics lacks %s:\n%s", want, &got)
}

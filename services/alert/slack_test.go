package alert_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/alert"
)

// TestASlackMessageShowsAReasonAsWrittenWithoutMentioningAnyone sends a transition whose reason
// holds Slack's control sequences (a probe's error can quote what an endpoint answered, an
// override's reason is whatever its author typed): Slack must show them as text, not ping the
// channel or a user, nor turn them into links.
func TestASlackMessageShowsAReasonAsWrittenWithoutMentioningAnyone(t *testing.T) {
	f := alert.Fact{Transition: events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		From: events.StatusUp, To: events.StatusDown, Reason: "body <!channel> & <@U0123|ops> <http://x.example|y>"}}
	body, err := alert.Body(&config.Alert{Name: "pager"}, config.Webhook{Format: config.FormatSlack}, config.AlertTransition, f)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Text string }
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	want := "(body &lt;!channel&gt; &amp; &lt;@U0123|ops&gt; &lt;http://x.example|y&gt;)"
	if !strings.HasSuffix(m.Text, want) || strings.ContainsAny(m.Text, "<>") {
		t.Errorf("slack text %q: want it to end %q, with no < or > left", m.Text, want)
	}
	// The generic format carries the reason as it is: its receiver escapes for its own medium.
	body, err = alert.Body(&config.Alert{Name: "pager"}, config.Webhook{}, config.AlertTransition, f)
	if err != nil {
		t.Fatal(err)
	}
	var p alert.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.Reason != f.Transition.Reason {
		t.Errorf("generic payload reason %q (%v), want %q", p.Reason, err, f.Transition.Reason)
	}
}

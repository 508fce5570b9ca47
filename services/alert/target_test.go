package alert

import (
	"strings"
	"testing"
)

func TestAWebhookIsNamedWithoutItsPathOrQuery(t *testing.T) {
	const slack = "https://hooks.slack.com/services/T0000/B0000/XXXXsecretXXXX"
	got := target(slack)
	if strings.Contains(got, "T0000") || strings.Contains(got, "secret") || !strings.HasPrefix(got, "https://hooks.slack.com/…#") {
		t.Errorf("target(%s) = %s, want the host and a digest, not the path", slack, got)
	}
	if other := target("https://hooks.slack.com/services/T0000/B0000/another"); other == got {
		t.Errorf("two webhooks of one host are both named %s, want them told apart", got)
	}
	if got := target("https://hooks.example.com/detour?token=s3cret"); strings.Contains(got, "s3cret") || strings.Contains(got, "detour") {
		t.Errorf("a webhook with a token in its query is named %s", got)
	}
	if got := target("https://hooks.example.com"); got != "https://hooks.example.com" {
		t.Errorf("a webhook with no path is named %s, want https://hooks.example.com", got)
	}
}

package cli_test

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/override"
)

func TestAnOverrideOnAnEndpointTheConfigurationNoLongerHasCanBeCleared(t *testing.T) {
	s := eventstest.Start(t)
	if _, _, err := config.Apply(t.Context(), s.JS, "v1.yaml", []byte(planDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	// Drained, then removed from the configuration.
	o := events.Override{App: "shop", Pool: "west", Endpoint: "old", Action: events.ActionDrain, By: "ann@box", Reason: "decommission"}
	if err := override.Set(t.Context(), s.JS, o); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("override", "clear", "shop", "west", "old", "--reason", "gone for good", "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "override clear on detour.state.override.shop.west.old") {
		t.Fatalf("override clear: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("override", "list", "--nats", s.URL); code != 0 || !strings.Contains(out, "no override in force") {
		t.Errorf("override list after the clear: exit %d\n%s%s", code, out, errOut)
	}
}

package dnsupdater

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestTheServerLogsATransitionThatDoesNotFollowWhatStateRecorded(t *testing.T) {
	js := eventstest.Start(t)
	var logs eventstest.Logs
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(&logs), UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	answer := func() []string { return addrs(ask(t, srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)) }
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.12"}) }, "the answer moves to us-east")

	// Down again, from up: whoever wrote this did not see STATE's history.
	forged := endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	want := `"source":"decider-test","why":"from up, but STATE last recorded down","message":"unexpected state event"`
	eventstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), want) }, "no warning %s in:\n%s", want, &logs)
	if n := strings.Count(logs.String(), "unexpected state event"); n != 1 || !strings.Contains(logs.String(), forged.ID) {
		t.Errorf("%d warnings, want one naming %s:\n%s", n, forged.ID, logs.String())
	}
}

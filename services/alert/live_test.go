package alert_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/alert"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// liveDoc is a configuration of one app whose alert groups (YAML list items, indented as
// under alerts:) the test chooses.
const liveDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, endpoints: [{name: w1, address: "127.0.0.11:80"}]}
      - {name: east, endpoints: [{name: e1, address: "127.0.0.12:80"}]}
alerts:
%s`

// group is an alert group told about every transition, with one webhook; extra is added to
// the webhook's entry (", secret_file: …").
func group(name, url, extra string) string {
	return fmt.Sprintf("  - {name: %s, on: [transition], webhooks: [{url: %q%s}]}\n", name, url, extra)
}

// version parses a configuration version numbered n with the given alert groups.
func version(t *testing.T, n uint64, groups ...string) *config.Config {
	t.Helper()
	var alerts string
	for _, g := range groups {
		alerts += g
	}
	c := eventstest.Config(t, fmt.Sprintf(liveDoc, alerts))
	c.Version = n
	return c
}

// count returns how many requests rc has seen.
func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

// delivered returns how many deliveries rc accepted.
func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.accepted)
}

// quiet waits until rc has seen no request for quietFor, within.
func (rc *receiver) quiet(t *testing.T, quietFor, within time.Duration, what string) {
	t.Helper()
	eventstest.Eventually(t, within, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.at) == 0 || time.Since(rc.at[len(rc.at)-1]) > quietFor
	}, "%s", what)
}

// liveSender runs the alert sender from first, with the versions sent on the returned channel,
// logging to logs as well as to the test.
func liveSender(t *testing.T, ns *eventstest.Server, first *config.Config, logs *eventstest.Logs) func(*config.Config) {
	t.Helper()
	configs := make(chan *config.Config)
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t)))
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ns.JS, Config: first, Configs: configs, Name: "controller-1",
			Backoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Log: log, CredentialDirs: tempCredentialDirs(t)})
	})
	if len(first.Alerts) > 0 {
		followsSTATE(t, ns, 5*time.Second, "")
	}
	return func(c *config.Config) {
		t.Helper()
		select {
		case configs <- c:
		case <-time.After(5 * time.Second):
			t.Fatalf("the sender did not take version %d within 5s", c.Version)
		}
	}
}

// westGoes appends a transition of the west pool to status to, and returns it.
func westGoes(t *testing.T, js jetstream.JetStream, from, to events.Status) events.Envelope {
	t.Helper()
	typ := events.TypePoolDown
	if to == events.StatusUp {
		typ = events.TypePoolUp
	}
	return transition(t, js, events.PoolStateSubject("shop", "west"), typ, events.Transition{App: "shop", Pool: "west", From: from, To: to})
}

// applied waits until the sender logged msg n times in all: it took the version sent.
func applied(t *testing.T, logs *eventstest.Logs, msg string, n int) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(msg) >= n }, "the sender to log %q %d times", msg, n)
}

const followsVersion = "alert groups follow a new configuration version"

func TestAVersionThatAddsAWebhookGroupIsToldTheNextTransitionAndOneThatRemovesItStopsItsDeliveries(t *testing.T) {
	oncall := &receiver{fails: 1 << 30} // it refuses until the test lets it accept
	oncallHook := serve(t, oncall)
	pager := &receiver{fails: 1 << 30} // it never accepts: its delivery retries until stopped
	pagerHook := serve(t, pager)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	send := liveSender(t, ns, version(t, 1, group("oncall", oncallHook.URL, "")), logs)

	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.count() >= 2 }, "oncall's delivery about west going down retrying")

	// Version 2 keeps oncall and adds the pager group: oncall's delivery in flight goes on, and
	// the next transition reaches pager too.
	send(version(t, 2, group("oncall", oncallHook.URL, ""), group("pager", pagerHook.URL, "")))
	applied(t, logs, followsVersion, 1)
	oncall.mu.Lock()
	oncall.fails = 0
	oncall.mu.Unlock()
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.delivered() == 1 }, "oncall's delivery in flight delivered after version 2")
	westGoes(t, ns.JS, events.StatusDown, events.StatusUp)
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.delivered() == 2 && pager.count() >= 2 },
		"oncall told, and the new pager group tried (and retrying), about west coming back")

	// Version 3 removes it: its delivery retrying stops, and the next transition does not reach it.
	send(version(t, 3, group("oncall", oncallHook.URL, "")))
	applied(t, logs, followsVersion, 2)
	if logs.Count("alert deliveries stopped: their group or webhook left the configuration") != 1 {
		t.Errorf("the stop of pager's delivery in flight was not logged once:\n%s", logs.String())
	}
	pager.quiet(t, 200*time.Millisecond, 5*time.Second, "pager's retries to stop once its group was removed")
	tried := pager.count()
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.delivered() == 3 }, "oncall told about west going down again")
	// The two deliveries of one transition start together: pager's would have come by now.
	waitAttempt(t, ns, "oncall", oncall.count())
	if n := pager.count(); n != tried {
		t.Errorf("the removed pager group got %d more requests after version 3", n-tried)
	}
}

func TestAVersionWhoseWebhookSecretCannotBeReadIsRefusedAndTheLastGoodGroupsKept(t *testing.T) {
	oncall := &receiver{}
	oncallHook := serve(t, oncall)
	pager := &receiver{}
	pagerHook := serve(t, pager)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	send := liveSender(t, ns, version(t, 1, group("oncall", oncallHook.URL, "")), logs)

	// Version 2 would tell oncall only about edges and add pager, whose secret file is missing:
	// none of it applies.
	missing := filepath.Join(t.TempDir(), "missing.key")
	v2 := version(t, 2, "  - {name: oncall, on: [edge_down], webhooks: [{url: \""+oncallHook.URL+"\"}]}\n",
		group("pager", pagerHook.URL, ", secret_file: "+missing))
	send(v2)
	applied(t, logs, "configuration version rejected; keeping the last good one", 1)
	if logs.Count(followsVersion) != 0 {
		t.Errorf("the refused version was applied:\n%s", logs.String())
	}
	// The refusal is logged, then stored.
	var m *jetstream.RawStreamMsg
	eventstest.Eventually(t, 5*time.Second, func() bool {
		var err error
		m, err = ns.Stream(t, events.StreamRejections).GetLastMsgForSubject(context.Background(), config.RejectedSubject("controller", "controller-1"))
		return err == nil
	}, "the refusal recorded on REJECTIONS")
	var r config.Rejected
	if e, err := events.Decode(m.Data); err != nil || e.Payload(&r) != nil || r.Version != 2 || len(r.Problems) != 1 {
		t.Errorf("recorded refusal %s, want version 2 with the secret's problem", m.Data)
	}

	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.count() == 1 }, "oncall, as version 1 says, told about west going down")
	waitAttempt(t, ns, "oncall", 1)
	if n := pager.count(); n != 0 {
		t.Errorf("pager, of the refused version, got %d requests", n)
	}
}

func TestASenderStartedWithoutGroupsFollowsSTATEOnceAVersionBringsSome(t *testing.T) {
	oncall := &receiver{}
	oncallHook := serve(t, oncall)
	ns := eventstest.Start(t)
	logs := &eventstest.Logs{}
	send := liveSender(t, ns, version(t, 1), logs)
	send(version(t, 2, group("oncall", oncallHook.URL, "")))
	followsSTATE(t, ns, 5*time.Second, "once version 2 brought a group")
	westGoes(t, ns.JS, events.StatusUp, events.StatusDown)
	eventstest.Eventually(t, 5*time.Second, func() bool { return oncall.count() == 1 }, "oncall told about west going down")
}

// waitAttempt waits until ALERTS holds n attempts of group's deliveries.
func waitAttempt(t *testing.T, ns *eventstest.Server, group string, n int) {
	t.Helper()
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(stored(t, ns, group)) >= n }, "%d attempts of %s recorded on ALERTS", n, group)
}

package plan_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/plan"
	"github.com/nats-io/nats.go/jetstream"
)

const base = `
zones:
  - name: demo.test
    records: ["static 300 IN A 192.0.2.1"]
    push: {server: "127.0.0.1:53", tsig: {name: k, secret: "c2VjcmV0"}}
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, interval: 1s}
    pools:
      - name: west
        region: us-west
        endpoints: [{address: "127.0.0.11:80"}]
      - name: east
        region: us-east
        endpoints: [{address: "127.0.0.12:80"}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
`

func TestDiffNamesEveryKindOfChangeFieldByField(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"a changed check interval", "interval: 1s", "interval: 2s",
			[]string{ // and what derives from it, unless given
				"~ apps[shop].check.interval: 1s → 2s",
				"~ apps[shop].check.timeout: 1s → 2s",
				"~ apps[shop].check.stale_after: 3s → 6s",
			}},
		{"a new app", "edges:", "  - name: blog\n    fqdn: blog.demo.test\n    pools: [{name: p, endpoints: [{address: \"127.0.0.13:80\"}]}]\nedges:",
			[]string{"+ apps[blog]"}},
		{"a removed pool", "      - name: east\n        region: us-east\n        endpoints: [{address: \"127.0.0.12:80\"}]\n", "",
			[]string{"- apps[shop].pools[east]"}},
		{"an added endpoint", `endpoints: [{address: "127.0.0.11:80"}]`, `endpoints: [{address: "127.0.0.11:80"}, {address: "127.0.0.14:80"}]`,
			[]string{"+ apps[shop].pools[west].endpoints[127-0-0-14_80]"}},
		{"a changed policy", "    fqdn: shop.demo.test\n", "    fqdn: shop.demo.test\n    policy: round_robin\n",
			[]string{"~ apps[shop].policy: failover → round_robin"}},
		{"changed static records of a zone", `records: ["static 300 IN A 192.0.2.1"]`, `records: ["static 300 IN A 192.0.2.2"]`,
			[]string{`~ zones[demo.test].records: ["static 300 IN A 192.0.2.1"] → ["static 300 IN A 192.0.2.2"]`}},
		{"a changed edge listener", `listen: "127.0.0.21:8080"`, `listen: "127.0.0.21:8081"`,
			[]string{`~ edges[edge-west].apps[shop].listen: "127.0.0.21:8080" → "127.0.0.21:8081"`}},
		{"a changed secret, without its value", `secret: "c2VjcmV0"`, `secret: "b3RoZXI="`,
			[]string{"~ zones[demo.test].push.tsig.secret: (secret) → (secret)"}},
		{"a default spelled out", "interval: 1s", "interval: 1s, fall: 3", nil},
		{"the default probe retention spelled out", "edges:", "streams: {probes: {max_age: 24h}}\nedges:", nil},
		{"bounded probe results", "edges:", "streams: {probes: {max_age: 6h, max_bytes: 1GiB}}\nedges:",
			[]string{"~ streams.probes.max_age: 24h0m0s → 6h0m0s", "~ streams.probes.max_bytes: 0 → 1GiB"}},
		{"a changed webhook, without its secret", "edges:", "alerts: [{name: oncall, on: [failover], webhooks: [{url: \"http://127.0.0.1:9/a\", secret: hook-secret}]}]\nedges:",
			[]string{"+ alerts[oncall]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("base lacks %q", tc.from)
			}
			before := eventstest.Config(t, base)
			after := eventstest.Config(t, strings.Replace(base, tc.from, tc.to, 1))
			var got []string
			for _, c := range plan.Diff(before, after, true) {
				got = append(got, c.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestAChangedWebhookIsShownWithoutItsSecret(t *testing.T) {
	with := func(url string) string {
		return base + "alerts: [{name: oncall, on: [failover], webhooks: [{url: \"" + url + "\", secret: hook-secret}]}]\n"
	}
	changes := plan.Diff(eventstest.Config(t, with("http://127.0.0.1:9/a")), eventstest.Config(t, with("http://127.0.0.1:9/b")), true)
	if len(changes) != 1 || strings.Contains(changes[0].String(), "hook-secret") || !strings.Contains(changes[0].String(), "secret: <redacted>") {
		t.Errorf("changes %v, want one webhook change that hides the secret", changes)
	}
}

func TestAChangedCredentialHeaderOrWebhookTokenIsShownWithoutIt(t *testing.T) {
	for _, tc := range []struct{ name, from, to, secret, want string }{
		{"a check's Authorization header", "check: {type: http, interval: 1s}",
			`check: {type: http, interval: 1s, headers: {Authorization: "Bearer t0k3n-0123456789", Accept: text/plain}}`, "t0k3n-0123456789",
			`~ apps[shop].check.headers: {} → {Accept: text/plain, Authorization: <redacted>}`},
		{"a webhook's Slack URL", "https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i", "https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6j", "Zx9aB3cD4eF5gH6",
			"~ alerts[oncall].webhooks: (secret) → (secret)"},
		{"a webhook URL's token query", "https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i", "https://alerts.example.test/hook?token=t0k3n", "t0k3n",
			`~ alerts[oncall].webhooks: [{url: "https://hooks.slack.com/<redacted>", format: json}] → [{url: "https://alerts.example.test/hook?token=<redacted>", format: json}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := base + "alerts: [{name: oncall, on: [failover], webhooks: [{url: \"https://hooks.slack.com/services/T0/B0/Zx9aB3cD4eF5gH6i\"}]}]\n"
			changes := plan.Diff(eventstest.Config(t, doc), eventstest.Config(t, strings.Replace(doc, tc.from, tc.to, 1)), true)
			var got []string
			for _, c := range changes {
				got = append(got, c.String())
			}
			if strings.Join(got, "\n") != tc.want || strings.Contains(strings.Join(got, "\n"), tc.secret) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

func TestDiffAgainstNothingRunningAddsEveryZoneAppAndEdge(t *testing.T) {
	var got []string
	for _, c := range plan.Diff(nil, eventstest.Config(t, base), true) {
		got = append(got, c.String())
	}
	want := "+ zones[demo.test]\n+ apps[shop]\n+ edges[edge-west]"
	if strings.Join(got, "\n") != want {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestAnswersShowWhatRemovingTheServingPoolChangesAtTheCurrentState(t *testing.T) {
	noEdges := base[:strings.Index(base, "edges:")]
	before := eventstest.Config(t, noEdges)
	after := eventstest.Config(t, strings.Replace(noEdges, "      - name: west\n        region: us-west\n        endpoints: [{address: \"127.0.0.11:80\"}]\n", "", 1))
	v := state.NewView()
	p, err := plan.Compare(&plan.Plan{File: "next.yaml"}, before, after, v, true)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Write(&out)
	for _, want := range []string{
		"next.yaml against no running configuration:",
		"  - apps[shop].pools[west]",
		"answers now:\n  ~ shop.demo.test. A: 127.0.0.11 → 127.0.0.12",
		"0 to add, 1 to remove, 0 to change; apply exactly this with: detour apply next.yaml --expect-version 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}

	// With west down, shop already answers east: removing west changes no answer.
	down, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "127-0-0-11_80", To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(events.EndpointStateSubject("shop", "west", "127-0-0-11_80"), 1, down); err != nil {
		t.Fatal(err)
	}
	answers, err := plan.Answers(before, after, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(answers) != 0 {
		t.Errorf("answers change with west down: %+v", answers)
	}
}

func TestMakeComparesWithTheActiveVersion(t *testing.T) {
	s := eventstest.Start(t)
	ctx := t.Context()
	_, v, err := config.Apply(ctx, s.JS, "v1.yaml", []byte(base), config.ApplyOptions{By: "ana@laptop", Message: "first"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(ctx, s.JS, "v2.yaml", []byte(strings.Replace(base, "interval: 1s", "interval: 3s, timeout: 1s, jitter: 0s, stale_after: 3s", 1)), true)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Write(&out)
	for _, want := range []string{
		"v2.yaml against version " + itoa(v.Number) + " (applied ",
		`by ana@laptop: "first"):`,
		"  ~ apps[shop].check.interval: 1s → 3s\nanswers now: unchanged\n",
		"--expect-version " + itoa(v.Number),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestWithoutComparingSecretsAChangeOnlyASecretMakesIsNotListed(t *testing.T) {
	with := func(secret, interval string) *config.Config {
		return eventstest.Config(t, strings.Replace(strings.Replace(base, `secret: "c2VjcmV0"`, `secret: "`+secret+`"`, 1), "interval: 1s", "interval: "+interval, 1))
	}
	for _, tc := range []struct {
		name, secret, interval, want string
	}{
		{"the running secret", "c2VjcmV0", "1s", ""},
		{"another secret", "b3RoZXI=", "1s", ""},
		{"another secret and interval", "b3RoZXI=", "2s",
			"~ apps[shop].check.interval: 1s → 2s\n~ apps[shop].check.timeout: 1s → 2s\n~ apps[shop].check.stale_after: 3s → 6s"},
	} {
		var got []string
		for _, c := range plan.Diff(with("c2VjcmV0", "1s"), with(tc.secret, tc.interval), false) {
			got = append(got, c.String())
		}
		if strings.Join(got, "\n") != tc.want {
			t.Errorf("%s: changes %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAPlanThatDidNotCompareTheSecretsSaysSo(t *testing.T) {
	var b strings.Builder
	(&plan.Plan{File: "next.yaml", SecretsNotCompared: true}).Write(&b)
	want := "next.yaml against no running configuration:\n" +
		"  (secrets written inline compared only as detour config get shows them: a read token's plan cannot tell a changed secret; plan with a write token to compare them)\n" +
		"no changes\n"
	if b.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A plan made while the last message on the configuration's subject is no version (bytes
// published there by hand, or an event of another type copied there) compares the document
// with the version the roles run, before that message, and prints the apply that stores over
// it. Over the bytes it was refused, "malformed event"; over the event it compared with nothing
// running, every app, pool and zone shown added, against a "version" applied by nobody.
func TestAPlanOverAMessageThatIsNoVersionComparesWithTheVersionTheRolesRun(t *testing.T) {
	transition, err := events.New(events.TypeEndpointDown, "decider/a", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		junk func(ctx context.Context, js jetstream.JetStream) (*jetstream.PubAck, error)
	}{
		{"bytes that are no event", func(ctx context.Context, js jetstream.JetStream) (*jetstream.PubAck, error) {
			return js.Publish(ctx, events.SubjectConfigDoc, []byte("not an event"))
		}},
		{"an event of another type", func(ctx context.Context, js jetstream.JetStream) (*jetstream.PubAck, error) {
			return events.Publish(ctx, js, events.SubjectConfigDoc, transition)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := eventstest.Start(t)
			ctx := t.Context()
			_, v, err := config.Apply(ctx, s.JS, "v1.yaml", []byte(base), config.ApplyOptions{By: "ana@laptop"})
			if err != nil {
				t.Fatal(err)
			}
			junk, err := tc.junk(ctx, s.JS)
			if err != nil {
				t.Fatal(err)
			}
			next := strings.Replace(base, "interval: 1s", "interval: 3s, timeout: 1s, jitter: 0s, stale_after: 3s", 1)
			p, err := plan.Make(ctx, s.JS, "v2.yaml", []byte(next), true)
			if err != nil {
				t.Fatalf("plan over a message that is no version: %v", err)
			}
			var out bytes.Buffer
			p.Write(&out)
			for _, want := range []string{
				"v2.yaml against version " + itoa(v.Number) + " (applied ",
				itoa(junk.Sequence) + ", is no version",
				"  ~ apps[shop].check.interval: 1s → 3s\n",
				"0 to add, 0 to remove, ",
				"--expect-version " + itoa(junk.Sequence) + "\n",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("plan lacks %q:\n%s", want, out.String())
				}
			}
			expect := p.ExpectVersion
			if _, _, err := config.Apply(ctx, s.JS, "v2.yaml", []byte(next), config.ApplyOptions{By: "ana@laptop", Expect: &expect}); err != nil {
				t.Errorf("apply exactly the plan (--expect-version %d): %v", expect, err)
			}
		})
	}
}

// A plan of the version the roles run, made while the last message on the configuration's
// subject is no version, has no changes, yet an apply is not a no-op there: it stores the
// version over that message, which detour config get and the roles' logs complain of until then.
// The plan said "no changes" and printed no apply line, as for a plan with nothing to apply; it
// says the apply stores over the message, and prints it.
func TestAPlanWithNoChangesOverAMessageThatIsNoVersionPrintsTheApplyThatStoresOverIt(t *testing.T) {
	s := eventstest.Start(t)
	ctx := t.Context()
	if _, _, err := config.Apply(ctx, s.JS, "v1.yaml", []byte(base), config.ApplyOptions{By: "ana@laptop"}); err != nil {
		t.Fatal(err)
	}
	junk, err := s.JS.Publish(ctx, events.SubjectConfigDoc, []byte("not an event"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(ctx, s.JS, "v1.yaml", []byte(base), true)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Write(&out)
	want := "no changes to the version the roles run; an apply stores it over message " + itoa(junk.Sequence) +
		", which is no version: detour apply v1.yaml --expect-version " + itoa(junk.Sequence) + "\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("plan ends:\n%s\nwant it to end %q", out.String(), want)
	}
	expect := p.ExpectVersion
	if _, _, err := config.Apply(ctx, s.JS, "v1.yaml", []byte(base), config.ApplyOptions{By: "ana@laptop", Expect: &expect}); err != nil {
		t.Fatalf("apply exactly the plan (--expect-version %d): %v", expect, err)
	}
	if _, err := config.Active(ctx, s.JS); err != nil {
		t.Errorf("after the apply the plan printed, the active version: %v", err)
	}
}

// A plan made while the only message on the configuration's subject is no version (junk
// published before anything was applied) compares with nothing running, and says that the
// roles wait for a version: it said they "run the version above", where it showed none.
func TestAPlanOverAMessageThatIsNoVersionAndNoneBeforeSaysTheRolesWait(t *testing.T) {
	s := eventstest.Start(t)
	ctx := t.Context()
	if err := events.EnsureStreams(ctx, s.JS, events.StreamOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	junk, err := s.JS.Publish(ctx, events.SubjectConfigDoc, []byte("not an event"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(ctx, s.JS, "v1.yaml", []byte(base), true)
	if err != nil {
		t.Fatalf("plan over a message that is no version, alone: %v", err)
	}
	var out bytes.Buffer
	p.Write(&out)
	for _, want := range []string{
		"v1.yaml against no running configuration:\n",
		itoa(junk.Sequence) + ", is no version, published there by hand: the roles refused it and wait for a version; ",
		"--expect-version " + itoa(junk.Sequence) + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
}

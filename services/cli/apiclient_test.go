package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// startAPI runs the controller's API over a JetStream server holding planDoc as version 1, and
// returns its URL and a write token.
func startAPI(t *testing.T) (url, token string) {
	t.Helper()
	return startAPIOn(t, eventstest.Start(t))
}

// startAPIOn is startAPI on the NATS server ns.
func startAPIOn(t *testing.T, ns *eventstest.Server) (url, token string) {
	t.Helper()
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(planDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	token, err := api.AddToken(path, "ops", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.Listen(api.Options{JS: ns.JS, Config: eventstest.Config(t, planDoc), Addr: "127.0.0.1:0", Tokens: toks, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api", srv.Run)
	return "http://" + srv.Addr(), token
}

func TestOperatorCommandsUseTheAPIWhenGivenOne(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", "")
	if code, _, errOut := run("override", "list", "--api", url); code != 2 || !strings.Contains(errOut, "set $DETOUR_TOKEN") {
		t.Errorf("without a token: exit %d, want 2 asking for $DETOUR_TOKEN:\n%s", code, errOut)
	}
	t.Setenv("DETOUR_TOKEN", token)

	if code, out, errOut := run("override", "set", "shop", "west", "--action", "drain", "--reason", "maintenance", "--api", url); code != 0 || !strings.Contains(out, "override set on detour.state.override.shop.west._pool") {
		t.Fatalf("override set: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("override", "list", "--api", url)
	if code != 0 || !strings.Contains(out, "drain") || !strings.Contains(out, "api/ops") || !strings.Contains(out, "maintenance") {
		t.Errorf("override list: exit %d\n%s%s", code, out, errOut)
	}

	next := writeFile(t, "v2.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 2s", 1))
	code, out, errOut = run("plan", next, "--api", url)
	if code != 0 || !strings.Contains(out, "against version 1") || !strings.Contains(out, "~ apps[shop].check.interval: 1s → 2s") {
		t.Errorf("plan: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("apply", next, "--api", url, "--expect-version", "1", "-m", "slower"); code != 0 || !strings.Contains(out, "as version 2 by api/ops") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	third := writeFile(t, "v3.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 3s", 1))
	if code, _, errOut := run("apply", third, "--api", url, "--expect-version", "1"); code != 1 || !strings.Contains(errOut, "409 Conflict") {
		t.Errorf("stale apply: exit %d, want 1 and the conflict:\n%s", code, errOut)
	}
	code, out, _ = run("config", "history", "--api", url)
	if code != 0 || !strings.Contains(out, "slower") || strings.Count(strings.TrimSpace(out), "\n") != 2 {
		t.Errorf("config history:\n%s", out)
	}
	code, out, _ = run("config", "get", "--version", "2", "--api", url)
	if code != 0 || !strings.Contains(out, "# version 2, applied ") || !strings.Contains(out, "interval: 2s") {
		t.Errorf("config get --version 2:\n%s", out)
	}
}

func TestApplyThroughTheAPISaysTheStreamsBoundsItSetsAreNotApplied(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", token)
	bounded := writeFile(t, "v2.yaml", planDoc+"streams:\n  probes: {max_age: 2h, max_bytes: 1GiB}\n")
	code, out, errOut := run("apply", bounded, "--api", url)
	if code != 0 || !strings.Contains(out, "as version 2 by api/ops") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: streams.probes is not applied through the API: PROBES keeps its bounds (run detour apply --nats as the operator to update them)") {
		t.Errorf("apply through the API of a document bounding PROBES did not warn that the bounds stay as they were:\n%s", errOut)
	}
	if code, _, errOut := run("apply", writeFile(t, "v3.yaml", planDoc), "--api", url); code != 0 || strings.Contains(errOut, "streams.probes") {
		t.Errorf("apply through the API of a document without streams: exit %d, a warning about them:\n%s", code, errOut)
	}
}

// detour apply over NATS creates the streams, raises their replicas to --replicas and sizes
// PROBES for the file's check rate; through the API, whose NATS user may not update streams, it
// did none of it and said nothing unless the file set streams.probes. --replicas is refused
// before anything is applied, and an apply says that PROBES keeps the bounds it has.
func TestApplyThroughTheAPISaysWhatItDoesNotDoToTheStreams(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", token)
	next := writeFile(t, "v2.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 2s", 1))
	code, out, errOut := run("apply", next, "--api", url, "--replicas", "3")
	if code != 2 || !strings.Contains(errOut, "--replicas: the API does not update the streams") {
		t.Errorf("apply --replicas 3 --api: exit %d, want 2 refusing --replicas:\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("apply", next, "--api", url)
	if code != 0 || !strings.Contains(out, "as version 2 by api/ops") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "not updated through the API: PROBES keeps the bounds it has") || !strings.Contains(errOut, "detour apply --nats") {
		t.Errorf("apply through the API did not say the streams were not updated:\n%s", errOut)
	}
}

// `detour config get` while the last message on the configuration's subject is no version (one
// published there by hand) says what that message is, over NATS and through the API, which
// answers 409: it printed the message's decoding error, and the API answered 502, as if the
// cluster had failed.
func TestConfigGetOverAMessageThatIsNoVersionSaysWhatItIs(t *testing.T) {
	ns := eventstest.Start(t)
	url, token := startAPIOn(t, ns)
	if _, err := ns.JS.Publish(t.Context(), events.SubjectConfigDoc, []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	const want = "is no version (published there by hand?)"
	if code, _, errOut := run("config", "get", "--nats", ns.URL); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("config get over NATS: exit %d, want 1 and %q:\n%s", code, want, errOut)
	}
	t.Setenv("DETOUR_TOKEN", token)
	if code, _, errOut := run("config", "get", "--api", url); code != 1 || !strings.Contains(errOut, "409 Conflict") || !strings.Contains(errOut, want) {
		t.Errorf("config get through the API: exit %d, want 1, 409 and %q:\n%s", code, want, errOut)
	}
}

// A version that does not exist and an override of a pool the configuration lacks are mistakes
// in the command: over NATS they exit 2, as the README's exit statuses say of usage errors,
// while through the API, which answers them 404 and 422, they exited 1, as if the cluster had
// failed. Both paths exit 2, naming what is missing.
func TestAMissingVersionAndAnUnknownPoolExitTwoOverNATSAndThroughTheAPI(t *testing.T) {
	ns := eventstest.Start(t)
	url, token := startAPIOn(t, ns)
	t.Setenv("DETOUR_TOKEN", token)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "get", "--version", "99"}, "no such configuration version"},
		{[]string{"override", "set", "shop", "nowhere", "--action", "drain", "--reason", "maintenance"}, `no pool "nowhere" in app "shop"`},
	} {
		for _, via := range [][]string{{"--nats", ns.URL}, {"--api", url}} {
			if code, _, errOut := run(append(c.args, via...)...); code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("%s %s: exit %d, want 2 and %q:\n%s", strings.Join(c.args, " "), via[0], code, c.want, errOut)
			}
		}
	}
}

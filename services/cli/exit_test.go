package cli_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// validConfig is a configuration every command accepts; it binds nothing fixed.
const validConfig = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: a, endpoints: [{address: "127.0.0.1:1"}]}]
`

func TestEveryCommandExitsWith0OnSuccess1OnFailureAnd2OnAUsageOrConfigurationError(t *testing.T) {
	good := writeFile(t, "good.yaml", validConfig)
	bad := writeFile(t, "bad.yaml", "zones: [{name: demo.test}]\napps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: 10.0.0.1:80}]}], fqnd: x}]\n")
	regional := writeFile(t, "regional.yaml", validConfig+"regions: [us-west]\n")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	key := writeFile(t, "tsig.key", "c2VjcmV0\n")
	keyed := writeFile(t, "keyed.yaml", "zones:\n  - name: demo.test\n    push: {server: \"127.0.0.1:53\", tsig: {name: k, secret_file: "+key+"}}\napps: []\n")
	noNATS := "nats://" + eventstest.ClosedPort(t)
	noDNS := eventstest.RefusedUDP(t)
	// A TCP listener on the DNS address makes `up` fail at run time, after its flags passed.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := t.TempDir()
	creds := t.TempDir()

	for _, c := range []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{"no command", nil, 2, "usage: detour COMMAND"},
		{"an unknown command", []string{"launch"}, 2, `unknown command "launch"`},
		{"help", []string{"help"}, 0, ""},
		{"help of an unknown command", []string{"help", "launch"}, 2, `unknown command "launch"`},

		{"up with an unknown flag", []string{"up", "--dns", "x"}, 2, "flag provided but not defined: -dns"},
		{"up with a bad log format", []string{"up", "--log-format", "xml"}, 2, `--log-format: want auto, console or json, got "xml"`},
		{"up with a bad log level", []string{"up", "--log-level", "loud"}, 2, `--log-level: want debug, info, warn or error, got "loud"`},
		{"up with a DNS address without a port", []string{"up", "--dns-addr", "127.0.0.1", "--data-dir", filepath.Join(data, "a")}, 2, `--dns-addr: want ip:port such as 127.0.0.1:5353, got "127.0.0.1"`},
		{"up with a NATS port out of range", []string{"up", "--nats-port", "70000"}, 2, "--nats-port: want -1 (any free port) or 0-65535, got 70000"},
		{"up with a bad region", []string{"up", "--regions", "us west"}, 2, `--regions: "us west" may hold only letters`},
		{"up with a region the configuration does not count", []string{"up", "--config", regional, "--regions", "us-west,eu", "--data-dir", filepath.Join(data, "e"),
			"--dns-addr", "127.0.0.1:0", "--nats-port", "-1", "--metrics-addr", "", "--api-addr", ""}, 2, `--regions: "eu" is not among the configuration's probing regions [us-west]`},
		{"up with a missing configuration", []string{"up", "--config", missing}, 2, "no such file or directory"},
		{"up with a bad configuration", []string{"up", "--config", bad, "--data-dir", filepath.Join(data, "b")}, 2, "invalid configuration"},
		{"up with an argument", []string{"up", "now"}, 2, `unexpected argument "now"`},
		{"up with a metrics address without a port", []string{"up", "--metrics-addr", "localhost"}, 2, `--metrics-addr: want ip:port`},
		{"up with an API address that is a name", []string{"up", "--api-addr", "localhost:8088"}, 2, `--api-addr: want an IP address before the port, got "localhost"`},
		{"up when its DNS address is taken", []string{"up", "--config", good, "--dns-addr", busy.Addr().String(), "--nats-port", "-1", "--data-dir", filepath.Join(data, "c"), "--log-level", "error"}, 1, "address already in use"},

		{"prober without a region", []string{"prober", "--nats", noNATS}, 2, "--region: must not be empty"},
		{"prober with a bad NATS URL", []string{"prober", "--region", "r", "--nats", "http://x"}, 2, "--nats: want a nats://"},
		{"prober with a missing configuration", []string{"prober", "--region", "r", "--config", missing}, 2, "--config: open"},
		{"prober with a negative member ttl", []string{"prober", "--region", "r", "--member-ttl", "-1s", "--nats", noNATS}, 2, "--member-ttl: must not be negative, got -1s"},
		// Its heartbeat comes from the configuration's checks (5 s by default: 1 s), which the
		// role reads while NATS is away.
		{"prober with a member ttl shorter than two heartbeats", []string{"prober", "--region", "r", "--config", good, "--member-ttl", "1500ms", "--nats", noNATS}, 2,
			"--member-ttl: 1.5s is shorter than two heartbeats (2 × 1s): the heartbeat is a third of the configuration's shortest check interval, within 100ms and 1s"},
		{"prober with a member ttl over an hour", []string{"prober", "--region", "r", "--config", good, "--member-ttl", "2h", "--nats", noNATS}, 2, "--member-ttl: want at most 1h0m0s, got 2h0m0s"},
		{"prober of a region the configuration does not count", []string{"prober", "--region", "eu-central", "--config", regional, "--nats", noNATS}, 2,
			`--region: "eu-central" is not among the configuration's probing regions [us-west]: its results would be dropped`},
		{"prober with a missing credential directory", []string{"prober", "--region", "r", "--credential-dir", missing, "--nats", noNATS}, 2, "--credential-dir: credential directory lstat " + missing + ": no such file or directory"},
		{"dns with a credential directory that is a file", []string{"dns", "--credential-dir", good, "--nats", noNATS}, 2, "--credential-dir: credential directory " + good + " is not a directory"},
		{"up with a missing credential directory", []string{"up", "--credential-dir", missing}, 2, "--credential-dir: credential directory lstat"},
		{"up with a credential directory holding its data directory", []string{"up", "--credential-dir", creds, "--data-dir", filepath.Join(creds, "data")}, 2, "--credential-dir: --data-dir " + filepath.Join(creds, "data") + " lies in a credential directory (" + creds + "), where a configuration could name the NATS key it keeps"},
		{"up with the working directory as a credential directory and its data directory there", []string{"up", "--credential-dir", "."}, 2, "--credential-dir: --data-dir detour-data lies in a credential directory"},
		{"controller with a credential directory holding its API tokens", []string{"controller", "--credential-dir", creds, "--api-tokens", filepath.Join(creds, "tokens"), "--nats", noNATS}, 2, "--credential-dir: --api-tokens " + filepath.Join(creds, "tokens") + " lies in a credential directory (" + creds + "), where a configuration could name the API's tokens"},
		{"decider with an argument", []string{"decider", "x"}, 2, `unexpected argument "x"`},
		{"decider with zero replicas", []string{"decider", "--replicas", "0", "--nats", noNATS}, 2, "--replicas: want 1 to 5"},
		{"decider with a bad metrics address", []string{"decider", "--metrics-addr", "9464", "--nats", noNATS}, 2, "--metrics-addr: want ip:port"},
		{"dns with an address without a port", []string{"dns", "--addr", "127.0.0.1", "--nats", noNATS}, 2, "--addr: want ip:port"},
		{"edge without a name", []string{"edge", "--nats", noNATS}, 2, "--name: must not be empty"},
		{"edge with a bad resolver", []string{"edge", "--name", "e", "--resolver", "dns.example", "--nats", noNATS}, 2, "--resolver: want ip:port"},
		// Roles start without NATS (it is tried in the background), so this one gets to its
		// configuration while NATS is away.
		{"edge not in the configuration", []string{"edge", "--name", "e", "--config", good, "--nats", noNATS, "--data-dir", filepath.Join(data, "d")}, 2, "--name: want one of the configured edges"},
		{"controller with a bad log level", []string{"controller", "--log-level", "trace"}, 2, "--log-level"},

		{"check without a file", []string{"check"}, 2, "want exactly one configuration file"},
		{"check of a missing file", []string{"check", missing}, 2, "no such file or directory"},
		{"check of a bad file", []string{"check", bad}, 2, "invalid configuration"},
		{"check of a good file", []string{"check", good}, 0, ""},
		{"check of a key file outside the credential directories", []string{"check", keyed}, 2, "zones[0].push.tsig.secret_file: " + key + " is not in a credential directory of this process (none)"},
		{"check of a key file inside the credential directories", []string{"check", "--credential-dir", filepath.Dir(key), keyed}, 0, ""},
		{"apply without a file", []string{"apply"}, 2, "want exactly one configuration file"},
		{"apply of a bad file", []string{"apply", bad, "--nats", noNATS}, 2, "invalid configuration"},
		{"apply when NATS is unreachable", []string{"apply", good, "--nats", noNATS}, 1, "connect to nats"},
		{"apply with seven replicas", []string{"apply", good, "--replicas", "7", "--nats", noNATS}, 2, "--replicas: want 1 to 5"},

		{"override without a verb", []string{"override"}, 2, "want `override set"},
		{"override with too few arguments", []string{"override", "set", "shop"}, 2, "want APP POOL [ENDPOINT]"},
		{"override set without an action", []string{"override", "set", "shop", "a", "--reason", "r", "--nats", noNATS}, 2, "action"},
		{"override list when NATS is unreachable", []string{"override", "list", "--nats", noNATS}, 1, "connect to nats"},

		{"query without a name", []string{"query"}, 2, "want NAME [TYPE]"},
		{"query of an unknown type", []string{"query", "shop.demo.test", "AAA"}, 2, `unknown record type "AAA"`},
		{"query with a server without a port", []string{"query", "--server", "127.0.0.1", "shop.demo.test"}, 2, "--server: want ip:port"},
		{"query of a server that is not there", []string{"query", "--server", noDNS, "shop.demo.test"}, 1, "refused the query"},

		{"events with an unknown stream", []string{"events", "--stream", "LOGS"}, 2, `--stream: want some of`},
		{"events with a filter no stream holds", []string{"events", "--subject", "other.>"}, 2, `--subject: "other.>" matches no subject`},
		{"events with a negative since", []string{"events", "--since", "-1m"}, 2, "--since: must not be negative"},
		{"events when NATS is unreachable", []string{"events", "--nats", noNATS}, 1, "connect to nats"},

		{"drill run with an unknown format", []string{"drill", "run", missing, "--format", "pdf", "--nats", noNATS}, 2, `--format: want text, json or html, got "pdf"`},
		{"drill plan with an unknown format", []string{"drill", "plan", missing, "--format", "html", "--nats", noNATS}, 2, `--format: want text or json, got "html"`},
		{"health with a timeout of zero", []string{"health", "--tcp", noDNS, "--timeout", "0s"}, 2, "--timeout: must be positive, got 0s"},
		{"backend with an argument-less flag", []string{"backend", "--listen"}, 2, "flag needs an argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(c.args...)
			if code != c.want {
				t.Errorf("detour %s: exit %d, want %d; stderr:\n%s", strings.Join(c.args, " "), code, c.want, stderr)
			}
			if !strings.Contains(stderr, c.wantStderr) {
				t.Errorf("detour %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), c.wantStderr, stderr)
			}
		})
	}
	if entries, _ := os.ReadDir(data); len(entries) > 1 {
		t.Errorf("a refused command created its data directory: %v", entries)
	}
}

func TestHelpOfEachCommandGoesToStdoutWithAnExampleAndItsFlags(t *testing.T) {
	for _, cmd := range []string{"up", "prober", "decider", "dns", "edge", "controller", "plan", "apply", "config", "token", "check", "override", "query", "events", "replay", "drill", "backend", "health"} {
		for _, args := range [][]string{{"help", cmd}, {cmd, "--help"}, {cmd, "-h"}} {
			code, stdout, stderr := run(args...)
			if code != 0 || stderr != "" {
				t.Errorf("detour %s: exit %d, stderr %q; want 0 and nothing on stderr", strings.Join(args, " "), code, stderr)
			}
			if !strings.HasPrefix(stdout, "usage: detour "+cmd) || !strings.Contains(stdout, "Example:\n  detour "+cmd) {
				t.Errorf("detour %s printed:\n%s\nwant the usage of %s with an example", strings.Join(args, " "), stdout, cmd)
			}
		}
	}
	_, stdout, _ := run("help", "up")
	for _, flag := range []string{"-regions", "-log-level", "-log-format", "-dns-addr"} {
		if !strings.Contains(stdout, flag) {
			t.Errorf("detour help up lacks %s:\n%s", flag, stdout)
		}
	}
	code, stdout, _ := run("--help")
	if code != 0 || !strings.Contains(stdout, "--regions") || !strings.Contains(stdout, "--log-level") || !strings.Contains(stdout, "events") {
		t.Errorf("detour --help: exit %d, stdout:\n%s\nwant the general usage with --regions, --log-level and events", code, stdout)
	}
}

func TestCheckRefusesExactlyWhatUpRefusesWithTheSameText(t *testing.T) {
	notBase64 := writeFile(t, "tsig.key", "not base64!\n")
	t.Setenv("DETOUR_CREDENTIAL_DIRS", filepath.Dir(notBase64))
	for name, doc := range map[string]string{
		"an unknown key":     "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqnd: shop.demo.test\n    pools: [{name: a, endpoints: [{address: 10.0.0.1:80}]}]\n",
		"a wrong type":       "zones: [{name: demo.test, ttl: abc}]\napps: []\n",
		"a bad record":       "zones:\n  - name: demo.test\n    records: [\"www 300 IN A not-an-ip\"]\napps: []\n",
		"a CNAME loop":       "zones:\n  - name: demo.test\n    records: [\"*.w IN CNAME x.w\"]\napps: []\n",
		"an occluded app":    "zones:\n  - name: demo.test\n    records: [\"sub IN NS ns.other.example.\"]\napps:\n  - name: api\n    fqdn: api.sub.demo.test\n    pools: [{name: p, endpoints: [{address: 10.0.0.1:80}]}]\n",
		"bad YAML":           "zones:\n  - name: demo.test\n   apps: []\n",
		"a missing key file": "zones:\n  - name: demo.test\n    push: {server: \"127.0.0.1:53\", tsig: {name: k, secret_file: /nonexistent/detour-tsig.key}}\napps: []\n",
		"a bad key file":     "zones:\n  - name: demo.test\n    push: {server: \"127.0.0.1:53\", tsig: {name: k, secret_file: " + notBase64 + "}}\napps: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "detour.yaml", doc)
			checkCode, _, checkErr := run("check", path)
			upCode, _, upErr := run("up", "--config", path, "--data-dir", filepath.Join(t.TempDir(), "data"), "--nats-port", "-1", "--dns-addr", "127.0.0.1:0")
			if checkCode != 2 || upCode != 2 {
				t.Fatalf("exit: check %d, up %d; want 2 and 2\ncheck:\n%s\nup:\n%s", checkCode, upCode, checkErr, upErr)
			}
			checkText, upText := strings.TrimPrefix(checkErr, "detour check: "), strings.TrimPrefix(upErr, "detour up: ")
			if checkText != upText || !strings.Contains(checkText, path+":") {
				t.Errorf("check says:\n%s\nup says:\n%s\nwant the same text, with the file and line", checkText, upText)
			}
		})
	}
}

// sharedIPDoc has two failover pools on one IP: valid, but a failover between them changes no
// answer, which detour check warns about at line 8.
const sharedIPDoc = `zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - name: west
        endpoints: [{address: "127.0.0.1:18101"}]
      - name: east
        endpoints: [{address: "127.0.0.1:18102"}, {address: "127.0.0.2:18102"}]
`

func TestCheckWarnsButPassesWhenTwoFailoverPoolsShareAnIP(t *testing.T) {
	path := writeFile(t, "detour.yaml", sharedIPDoc)
	code, stdout, stderr := run("check", path)
	want := path + `:8: warning: apps[0].pools[1]: shares 127.0.0.1 with pool "west": a DNS answer carries addresses, not ports, so a failover between them changes no answer` + "\n"
	if code != 0 || !strings.Contains(stdout, "valid: 1 zone, 1 app, 0 edges") || stderr != want {
		t.Errorf("detour check: exit %d\nstdout: %s\nstderr: %s\nwant exit 0, valid, and on stderr:\n%s", code, stdout, stderr, want)
	}
}

func TestARoleRefusesACredentialDirectoryHoldingTheNATSKeyItConnectsWith(t *testing.T) {
	creds := t.TempDir()
	seed := filepath.Join(creds, "nats.seed")
	t.Setenv("DETOUR_NATS_NKEY", seed)
	code, _, stderr := run("prober", "--region", "r", "--credential-dir", creds, "--nats", "nats://"+eventstest.ClosedPort(t))
	if want := "--credential-dir: $DETOUR_NATS_NKEY " + seed + " lies in a credential directory (" + creds + ")"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want 2 with %q; stderr:\n%s", code, want, stderr)
	}
}

// The member TTL's bounds that hold under any configuration are checked before the role waits
// for NATS to hand it one: a prober given a TTL over an hour, or under two of the shortest
// heartbeat, stops at once with exit 2 rather than wait for NATS first.
func TestAProberRefusesAMemberTTLNoConfigurationAllowsBeforeNATSAnswers(t *testing.T) {
	noNATS := "nats://" + eventstest.ClosedPort(t)
	for _, c := range []struct {
		ttl, want string
	}{
		{"2h", "--member-ttl: want at most 1h0m0s, got 2h0m0s"},
		{"150ms", "--member-ttl: 150ms is shorter than two heartbeats (2 × 100ms)"},
	} {
		type result struct {
			code   int
			stderr string
		}
		done := make(chan result, 1)
		go func() {
			code, _, stderr := run("prober", "--region", "r", "--member-ttl", c.ttl, "--nats", noNATS)
			done <- result{code, stderr}
		}()
		select {
		case r := <-done:
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("detour prober --member-ttl %s: exit %d, want 2 saying %q; stderr:\n%s", c.ttl, r.code, c.want, r.stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("detour prober --member-ttl %s still waits for NATS after 10 s instead of exiting 2", c.ttl)
		}
	}
}

package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/cli"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUpRefusesABadConfigurationWholeWithExitStatus2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	doc := `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.elsewhere.test
    policy: nearest
    check: {type: http, interval: 1s, timeout: 5s}
    pools:
      - name: west
        endpoints: [{address: "10.0.0.1"}]
  - name: shop
    fqdn: www.demo.test
    pools: [{name: a, endpoints: [{address: "10.0.0.2:80"}]}]
`
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	code, _, stderr := run("up", "--config", bad, "--data-dir", data, "--nats-port", "-1", "--dns-addr", "127.0.0.1:0")
	if code != 2 {
		t.Fatalf("exit status %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		`apps[0].fqdn: "shop.elsewhere.test" lies in none of the configured zones`,
		`apps[0].policy: want failover, weighted, round_robin or source, got "nearest"`,
		`apps[0].check.timeout: 5s is longer than the interval 1s`,
		`apps[0].pools[0].endpoints[0].address: want ip:port: the http check needs a port and check.port sets none, got "10.0.0.1"`,
		`apps[1].name: duplicate app "shop"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if got := strings.Count(stderr, "\n"); got != 6 {
		t.Errorf("stderr has %d lines, want a heading and exactly five problems:\n%s", got, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data directory was created (%v): something started despite the bad configuration", err)
	}
}

func TestShippedConfigurationsAreValid(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, path := range []string{
		filepath.Join(root, "services", "demo", "demo.yaml"),
		filepath.Join(root, "deployments", "compose", "detour.yaml"),
	} {
		code, stdout, stderr := run("check", path)
		if code != 0 || !strings.Contains(stdout, "valid") {
			t.Errorf("detour check %s: exit %d\n%s%s", path, code, stdout, stderr)
		}
	}
}

func TestUsageMistakesExitWithStatus2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"launch"},
		{"up", "--log-format", "xml"},
		{"override", "set", "shop"},
		{"query"},
		{"check"},
	} {
		if code, _, stderr := run(args...); code != 2 {
			t.Errorf("detour %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr)
		}
	}
}

package cli_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
)

func TestANATSPasswordNeverReachesTheTerminal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: the connection is refused
	code, _, stderr := run("override", "list", "--nats", "nats://operator:op-s3cret@"+addr)
	if code != 1 || !strings.Contains(stderr, "nats://operator:REDACTED@"+addr) || strings.Contains(stderr, "op-s3cret") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 1 and the URL with its password redacted", code, stderr)
	}
}

func TestApplyWarnsAboutASecretWrittenInline(t *testing.T) {
	srv := eventstest.Start(t)
	path := filepath.Join(t.TempDir(), "detour.yaml")
	doc := `
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: k, secret: "c2VjcmV0"}}
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run("apply", path, "--nats", srv.URL)
	want := "detour apply: warning: zones[0].push.tsig.secret is stored in CONFIG, where every role may read it: use secret_file or secret_env"
	if code != 0 || !strings.Contains(stderr, want) || strings.Contains(stderr, "c2VjcmV0") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 0 and the warning, without the secret", code, stderr)
	}
}

func TestApplyWarnsAsDetourCheckDoesAboutWhatCannotWorkAsMeant(t *testing.T) {
	srv := eventstest.Start(t)
	path := writeFile(t, "detour.yaml", sharedIPDoc)
	_, _, checkErr := run("check", path)
	code, _, stderr := run("apply", path, "--nats", srv.URL)
	want := path + `:8: warning: apps[0].pools[1]: shares 127.0.0.1 with pool "west"`
	if code != 0 || !strings.HasPrefix(checkErr, want) || !strings.Contains(stderr, checkErr) {
		t.Errorf("detour apply: exit status %d, stderr:\n%s\nwant 0 and what detour check prints:\n%s", code, stderr, checkErr)
	}
}

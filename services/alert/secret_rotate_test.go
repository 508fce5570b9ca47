package alert

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// A webhook's secret rotated in its file signs the deliveries within a recheck and a settle,
// without a new version, each attempt signed with the secret of its moment; a rotation that
// breaks the file (empty, gone) keeps the secret before, logged once, never the secret.
func TestAWebhookSecretRotatedInItsFileSignsWithinARecheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hook.key")
	write := func(s string) { t.Helper(); eventstest.ReplaceFile(t, file, s, false) }
	write("secret-one\n")
	cfg := eventstest.Config(t, fmt.Sprintf(`
zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts: [{name: oncall, on: [failover], webhooks: [{url: "https://hooks.example.com/x", secret_file: %q}]}]
`, file))
	dirs, err := config.NewCredentialDirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); defer mu.Unlock(); now = now.Add(config.FileRecheck) }
	logs := &eventstest.Logs{}
	hooks, err := readHooks(cfg, dirs, clock, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	s := hooks[&cfg.Alerts[0].Webhooks[0]].secret
	if got := s.value(); got != "secret-one" {
		t.Fatalf("secret %q, want the file's", got)
	}
	write("secret-two\n")
	for deadline := time.Now().Add(5 * time.Second); s.value() != "secret-two"; advance() {
		if got := s.value(); got != "secret-one" {
			t.Fatalf("between the rotation and its use, the secret is %q", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated secret was not used")
		}
	}
	write(" \n")
	for range 3 {
		advance()
		if got := s.value(); got != "secret-two" {
			t.Fatalf("after the file was emptied, the secret is %q, want the one before", got)
		}
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	advance()
	if got := s.value(); got != "secret-two" {
		t.Fatalf("after the file was removed, the secret is %q, want the one before", got)
	}
	if n := logs.Count("webhook secret file not read again: deliveries are signed with what it held"); n != 1 {
		t.Errorf("logged the broken file %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "secret-") {
		t.Errorf("the log holds the secret:\n%s", logs.String())
	}
}

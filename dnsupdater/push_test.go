package dnsupdater

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/bindtest"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func TestServerPushesItsAnswersToAnExistingPrimaryOnEveryChange(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", KeyName: "detour-key", Secret: secret, File: `$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
shop  IN A   192.0.2.200
other IN A   192.0.2.99
`})
	js := eventstest.Start(t)
	// The key is read from a file by the server that pushes: CONFIG holds only its path.
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := pushedShop(t, primary, "secret_file: "+strconv.Quote(keyFile))
	startServer(t, js, cfg, "")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.11"})
	}, "the primary serves Detour's answer once the server has read STATE")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.12"})
	}, "the primary serves the failover answer")
	if got := bindtest.Dig(t, primary, "other.demo.test", "A"); !slices.Equal(got, []string{"192.0.2.99"}) {
		t.Errorf("the primary's own records must stay: want [192.0.2.99], got %v", got)
	}
	// The marker says which STATE position the records reflect: the failover's event, in the
	// stream as it was created.
	info, err := js.Stream(t, events.StreamState).Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fields := []string{fmt.Sprintf(`"seq=%d"`, info.State.LastSeq), `"stream-created=` + info.Created.UTC().Format(time.RFC3339Nano) + `"`, `"server=dns-test"`}
	marker := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT")
	if len(marker) != 1 || !strings.HasPrefix(marker[0], `"detour-state" `) || !containsAll(marker[0], fields) {
		t.Errorf("marker %v, want one detour-state record with %v", marker, fields)
	}
}

// A marker naming a position the STATE stream does not hold (a sequence beyond its last, a
// stream created later than the live one) is pushed over at the server's first push, not
// obeyed until STATE passes it.
func TestAServerPushesOverAMarkerOfAPositionTheStateStreamDoesNotHold(t *testing.T) {
	for _, c := range []struct {
		name string
		// marker returns the marker's seq and stream-created from the live stream's info.
		marker func(info *jetstream.StreamInfo) (uint64, time.Time)
	}{
		{"a sequence far beyond the stream's last", func(info *jetstream.StreamInfo) (uint64, time.Time) {
			return info.State.LastSeq + 1<<40, info.Created
		}},
		{"a stream created an hour after the live one", func(info *jetstream.StreamInfo) (uint64, time.Time) {
			return 1, info.Created.Add(time.Hour)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := eventstest.Start(t)
			endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
			info, err := js.Stream(t, events.StreamState).Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			seq, created := c.marker(info)
			secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
			primary := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", KeyName: "detour-key", Secret: secret, File: fmt.Sprintf(`$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
_detour-state IN TXT "detour-state" "seq=%d" "stream-created=%s" "digest=0123" "server=dns-x" "run=x1"
`, seq, created.UTC().Format(time.RFC3339Nano))})
			cfg := pushedShop(t, primary, "secret: "+strconv.Quote(secret))
			startServer(t, js, cfg, "")
			eventstest.Eventually(t, 10*time.Second, func() bool {
				return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.12"})
			}, "the primary serves the server's answer, pushed over the marker")
			fields := []string{fmt.Sprintf(`"seq=%d"`, info.State.LastSeq), `"stream-created=` + info.Created.UTC().Format(time.RFC3339Nano) + `"`, `"server=dns-test"`}
			if marker := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT"); len(marker) != 1 || !containsAll(marker[0], fields) {
				t.Errorf("marker %v, want one detour-state record with %v", marker, fields)
			}
		})
	}
}

// pushedShop is the configuration of an app, shop, in zone demo.test, pushed to primary with the
// key detour-key whose secret key names (`secret: …` or `secret_file: …`).
func pushedShop(t *testing.T, primary, key string) *config.Config {
	t.Helper()
	return eventstest.Config(t, fmt.Sprintf(`
zones:
  - name: demo.test
    push: {server: %q, tsig: {name: detour-key, %s}, retry_interval: 100ms}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - name: us-west
        endpoints: [{address: "127.0.0.11:8081"}]
      - name: us-east
        endpoints: [{address: "127.0.0.12:8081"}]
`, primary, key))
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// A server that cannot read its push key does not start, and says which field of which zone
// names it, as it does for a zone's transfer key and as detour check does.
func TestAServerThatCannotReadItsPushKeyNamesTheZonesField(t *testing.T) {
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, `
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: detour-key, secret_env: DETOUR_TEST_UNSET_PUSH_KEY}}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: p1, endpoints: [{address: "127.0.0.11:80"}]}]
`)
	_, err := New(Options{JS: js.JS, Config: cfg, Addr: "127.0.0.1:0", Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
	if want := "new dns server: zones[0].push.tsig.secret_env: $DETOUR_TEST_UNSET_PUSH_KEY is not set"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a server whose push key's variable is not set: %v, want an error starting %q", err, want)
	}
}

package dnsupdater

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
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
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func TestServerPushesItsAnswersToAnExistingPrimaryOnEveryChange(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
			t.Parallel()
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

// A primary that another server left at a state of an earlier position than this one's (a state
// this server folded away with its reversal, and so never pushed, the other server stopping
// before it pushed the reversal) is pushed over at the next recheck, though nothing changes here:
// before, it kept that state, a failover that had ended, until the next change.
func TestAPrimaryAnotherServerLeftAtAnEarlierStateIsPushedOverThoughNothingChangesHere(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", KeyName: "detour-key", Secret: secret, File: `$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
`})
	js := eventstest.Start(t)
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	srv, err := New(Options{JS: js.JS, Config: pushedShop(t, primary, "secret: "+strconv.Quote(secret)), Addr: "127.0.0.1:0", Name: "dns-b",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv.pushRecheck = 100 * time.Millisecond
	eventstest.Run(t, "dns server", srv.Run)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.11"})
	}, "the server's first push")
	info, err := js.Stream(t, events.StreamState).Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// Another server pushed us-west's failure at this position, and stopped before pushing its
	// recovery; this server folds both at once, and a later event that changes no answer here.
	u := new(dns.Msg)
	u.SetUpdate("demo.test.")
	u.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "shop.demo.test.", Rrtype: dns.TypeA, Class: dns.ClassANY}},
		&dns.ANY{Hdr: dns.RR_Header{Name: "_detour-state.demo.test.", Rrtype: dns.TypeTXT, Class: dns.ClassANY}}})
	marker := fmt.Sprintf(`_detour-state.demo.test. 60 IN TXT "detour-state" "seq=%d" "stream-created=%s" "digest=0123" "server=dns-a" "run=a1"`,
		info.State.LastSeq, info.Created.UTC().Format(time.RFC3339Nano))
	for _, text := range []string{"shop.demo.test. 300 IN A 127.0.0.12", marker} {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		u.Insert([]dns.RR{rr})
	}
	u.SetTsig("detour-key.", dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second, TsigSecret: map[string]string{"detour-key.": secret}}
	if r, _, err := c.Exchange(u, primary); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("the other server's update: %v, %v", r, err)
	}
	endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 10*time.Second, func() bool {
		m := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT")
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.11"}) && len(m) == 1 && strings.Contains(m[0], `"server=dns-b"`)
	}, "the server's records and marker back on the primary")
}

// pushedShop is the configuration of an app, shop, in zone demo.test, pushed to primary with the
// key detour-key whose secret key names (`secret: …` or `secret_file: …`).
func pushedShop(t *testing.T, primary, key string) *config.Config {
	t.Helper()
	return eventstest.Config(t, pushedShopText(primary, key))
}

// pushedShopText is the YAML of pushedShop.
func pushedShopText(primary, key string) string {
	return fmt.Sprintf(`
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
`, primary, key)
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

// An owned record edited by hand on the primary, the marker left as it was, is put back at the
// next recheck, though nothing changes here: before, the recheck read only the marker, which
// said the primary held Detour's records, and the edit stayed until the zone's next change.
func TestAnOwnedRecordEditedOnThePrimaryBesideTheMarkerIsRestoredAtTheNextRecheck(t *testing.T) {
	t.Parallel()
	nsupdate, err := exec.LookPath("nsupdate")
	if err != nil {
		t.Skip("nsupdate (Debian package dnsutils) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := bindtest.Start(t, bindtest.Primary{Zone: "demo.test", KeyName: "detour-key", Secret: secret, File: `$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
`})
	js := eventstest.Start(t)
	srv, err := New(Options{JS: js.JS, Config: pushedShop(t, primary, "secret: "+strconv.Quote(secret)), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv.pushRecheck = 200 * time.Millisecond
	eventstest.Run(t, "dns server", srv.Run)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.11"})
	}, "the server's first push")
	marker := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT")

	host, port, _ := strings.Cut(primary, ":")
	cmd := exec.Command(nsupdate, "-y", "hmac-sha256:detour-key:"+secret)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %s\nzone demo.test\nupdate delete shop.demo.test. A\nupdate add shop.demo.test. 300 A 192.0.2.66\nupdate add shop.demo.test. 300 AAAA 2001:db8::66\nsend\n", host, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v: %s", err, out)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(bindtest.Dig(t, primary, "shop.demo.test", "A"), []string{"127.0.0.11"}) &&
			len(bindtest.Dig(t, primary, "shop.demo.test", "AAAA")) == 0
	}, "the server's records back on the primary after the hand edit")
	if got := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT"); len(got) != 1 || len(marker) != 1 || !strings.HasPrefix(got[0], `"detour-state"`) {
		t.Errorf("marker %v after the recheck, want one detour-state record (before: %v)", got, marker)
	}
}

package dnsupdater

import (
	"encoding/base64"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/bindtest"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// shopPrimary starts a BIND primary of demo.test whose updates take the key name with secret,
// holding shop's address of before Detour.
func shopPrimary(t *testing.T, name, secret string) string {
	t.Helper()
	return bindtest.Start(t, bindtest.Primary{Zone: "demo.test", KeyName: name, Secret: secret, File: `$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
shop  IN A   192.0.2.200
`})
}

// unpushedShop is pushedShop without its push block: demo.test served, pushed nowhere.
func unpushedShop(t *testing.T) *config.Config {
	t.Helper()
	text := pushedShopText("127.0.0.1:53", "secret: x")
	return eventstest.Config(t, text[:strings.Index(text, "    push:")]+text[strings.Index(text, "apps:"):])
}

func digEquals(t *testing.T, primary, name string, want ...string) func() bool {
	return func() bool { return slices.Equal(bindtest.Dig(t, primary, name, "A"), want) }
}

func TestAReloadThatAddsAPushToAZoneStartsPushingItWithoutARestart(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, unpushedShop(t))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.11"})
	}, "the server answers shop before the reload")

	configs <- pushedShop(t, primary, "secret: "+strconv.Quote(secret))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.11"),
		"the primary serves Detour's answer after the reload that adds the push, no STATE change needed")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.12"),
		"the primary serves the failover answer")
}

func TestAReloadThatMovesAPushToAnotherPrimaryAndKeyPushesThereWithTheNewKeyOnly(t *testing.T) {
	t.Parallel()
	secretA := base64.StdEncoding.EncodeToString([]byte("detour test key A, 32 bytes long"))
	secretB := base64.StdEncoding.EncodeToString([]byte("detour test key B, 32 bytes long"))
	a := shopPrimary(t, "detour-key", secretA)
	b := shopPrimary(t, "key-b", secretB) // takes only the new key
	js := eventstest.Start(t)
	_, configs := startReloadable(t, js, pushedShop(t, a, "secret: "+strconv.Quote(secretA)))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, a, "shop.demo.test", "127.0.0.11"), "the first primary serves Detour's answer")

	configs <- eventstest.Config(t, strings.Replace(pushedShopText(b, "secret: "+strconv.Quote(secretB)), "name: detour-key", "name: key-b", 1))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, b, "shop.demo.test", "127.0.0.11"),
		"the new primary serves Detour's answer after the reload, pushed with the new key, no STATE change needed")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, digEquals(t, b, "shop.demo.test", "127.0.0.12"), "the new primary serves the failover answer")
	if got := bindtest.Dig(t, a, "shop.demo.test", "A"); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Errorf("the primary the reload left got %v, want the answer of before the reload, [127.0.0.11]", got)
	}
}

func TestAReloadThatRemovesAZonesPushStopsPushingIt(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, pushedShop(t, primary, "secret: "+strconv.Quote(secret)))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.11"), "the primary serves Detour's answer")

	configs <- unpushedShop(t)
	// The reload is applied once a record it adds is served (its push block is all it removes
	// otherwise, which answers nothing).
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.12"})
	}, "the server answers the failover itself")
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if got := bindtest.Dig(t, primary, "shop.demo.test", "A"); !slices.Equal(got, []string{"127.0.0.11"}) {
			t.Fatalf("the primary whose push the reload removed got %v, want what it held before, [127.0.0.11]", got)
		}
	}
}

func TestAReloadWhosePushKeyCannotBeReadIsRefusedAndThePushOfBeforeGoesOn(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, pushedShop(t, primary, "secret: "+strconv.Quote(secret)))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.11"), "the primary serves Detour's answer")

	// The refused version also removes pool us-east, which would change the answer.
	refused := strings.Replace(pushedShopText(primary, "secret_env: DETOUR_TEST_UNSET_PUSH_KEY"), "      - name: us-east\n        endpoints: [{address: \"127.0.0.12:8081\"}]\n", "", 1)
	configs <- eventstest.Config(t, refused)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.12"),
		"the failover of the configuration in force pushed by the pusher of before")
	if got := addrs(ask(t, srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)); !slices.Equal(got, []string{"127.0.0.12"}) {
		t.Errorf("the server answers %v, want the failover of the configuration in force, [127.0.0.12]", got)
	}
}

// A version that comes while the server starts is applied to the pushers too: the start does
// not put back the pushers of the configuration the server was made with over those of the
// version. Before, the start read the pushers while the refresher, already running, replaced
// them: run with -race, about one start in twenty stopped the new version's pusher and pushed to
// the primary it replaced (and the race detector told of it at once).
func TestAVersionComingAsTheServerStartsIsTheOneWhosePushRuns(t *testing.T) {
	t.Parallel()
	secretA := base64.StdEncoding.EncodeToString([]byte("detour test key A, 32 bytes long"))
	secretB := base64.StdEncoding.EncodeToString([]byte("detour test key B, 32 bytes long"))
	a := shopPrimary(t, "detour-key", secretA)
	b := shopPrimary(t, "key-b", secretB)
	js := eventstest.Start(t)
	moved := eventstest.Config(t, strings.Replace(pushedShopText(b, "secret: "+strconv.Quote(secretB)), "name: detour-key", "name: key-b", 1))
	// pushes lists the servers of the "zone push started" and "zone push stopped" lines of logs,
	// in order, each after a + or a -.
	pushes := func(logs *eventstest.Logs) []string {
		var out []string
		for l := range strings.Lines(logs.String()) {
			for sign, msg := range map[string]string{"+": "zone push started", "-": "zone push stopped"} {
				if strings.Contains(l, `"message":"`+msg+`"`) {
					_, server, _ := strings.Cut(l, `"server":"`)
					server, _, _ = strings.Cut(server, `"`)
					out = append(out, sign+server)
				}
			}
		}
		return out
	}
	for i := range 50 {
		var logs eventstest.Logs
		configs := make(chan *config.Config, 1)
		srv, err := New(Options{JS: js.JS, Config: pushedShop(t, a, "secret: "+strconv.Quote(secretA)), Addr: "127.0.0.1:0", Name: "dns-test",
			Log: zerolog.New(&logs), UDPSockets: 1, Configs: configs})
		if err != nil {
			t.Fatal(err)
		}
		configs <- moved
		stop := eventstest.Run(t, "dns server", srv.Run)
		eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Contains(pushes(&logs), "+"+b) }, "start %d: the version's pusher started", i)
		stop() // the start's own pushers are started by then
		if got := pushes(&logs); slices.Contains(got, "-"+b) || got[len(got)-1] != "+"+b {
			t.Fatalf("start %d: pushers started (+) and stopped (-) %v, want the one to %s (the version's) started last and never stopped, not the one to %s (the configuration it replaced)", i, got, b, a)
		}
	}
}

// A reload that changes only a push's retry_interval or marker changes the running pusher in
// place: no pusher stopped and started, no owned name rewritten, the marker moved to its new
// name by the next push, and the new retry_interval cutting short the wait of a failed push and
// spacing its retries.
// Before, either change restarted the pusher, whose first push rewrote every owned name.
func TestAReloadThatChangesOnlyAPushsRetryIntervalOrMarkerChangesItInPlace(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	relay, dropping, dials := dropper(t, primary)
	js := eventstest.Start(t)
	var logs eventstest.Logs
	configs := make(chan *config.Config, 1)
	text := strings.Replace(pushedShopText(relay, "secret: "+strconv.Quote(secret)), "retry_interval: 100ms", "retry_interval: 1h", 1)
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, text), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(&logs), UDPSockets: 2, Configs: configs, CredentialDirs: tempCredentialDirs(t)})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.11"), "the primary serves Detour's answer")

	pushedBefore := len(logs.String())
	moved := strings.Replace(text, "retry_interval: 1h", "retry_interval: 1h, marker: _moved.demo.test", 1)
	configs <- eventstest.Config(t, moved)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.12"), "the primary serves the failover")
	if n := logs.Count("zone push stopped"); n != 0 {
		t.Errorf("the reload stopped the pusher %d times, want it changed in place", n)
	}
	since := logs.String()[pushedBefore:]
	if n, one := strings.Count(since, `"message":"zone pushed"`), strings.Count(since, `"rrsets":1,`); n != 1 || one != 1 {
		t.Errorf("after the reload: %d pushes, %d of one RRset; want the failover alone, pushed as the one RRset it changes, not every owned name rewritten:\n%s", n, one, since)
	}
	if got := bindtest.Dig(t, primary, "_moved.demo.test", "TXT"); len(got) != 1 || !strings.Contains(got[0], `"server=dns-test"`) {
		t.Errorf("the marker's new name holds %v, want the marker", got)
	}
	if got := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT"); len(got) != 0 {
		t.Errorf("the marker's old name still holds %v, want it moved", got)
	}

	// A push failing while retry_interval is 1h waits; a reload to 100ms cuts the wait short,
	// and spaces the next retries by 100ms.
	dropping.Store(true)
	before := dials.Load()
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return dials.Load() > before }, "the attempt to push to a primary that hangs up")
	configs <- eventstest.Config(t, strings.Replace(moved, "retry_interval: 1h", "retry_interval: 100ms", 1))
	eventstest.Eventually(t, 10*time.Second, func() bool { return dials.Load()-before >= 4 }, "three retries after the reload to retry_interval 100ms")
	dropping.Store(false)
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.11"), "the primary serves the recovery")
}

// dropper passes TCP connections to upstream, and returns its address, a switch that has it
// hang up every connection instead, and the count of the connections it took.
func dropper(t *testing.T, upstream string) (string, *atomic.Bool, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var drop atomic.Bool
	var dials atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			if drop.Load() {
				_ = c.Close()
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), &drop, &dials
}

// An app that leaves the configuration in the version that also changes the zone's push key
// (its inline secret moved to a file, as detour apply's warning asks) leaves the primary: the
// pusher the reload starts for the same primary empties the names the one it replaces pushed
// there. Before, it knew only the names of the new version, and the app's last addresses
// stayed on the primary for good.
func TestAnAppRemovedByTheReloadThatChangesThePushKeyLeavesThePrimary(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	withAPI := pushedShopText(primary, "secret: "+strconv.Quote(secret)) + `  - name: api
    fqdn: api.demo.test
    pools: [{name: p1, endpoints: [{address: "127.0.0.31:80"}]}]
`
	_, configs := startReloadable(t, js, eventstest.Config(t, withAPI))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "api.demo.test", "127.0.0.31"), "the primary serves Detour's answer for api")

	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configs <- pushedShop(t, primary, "secret_file: "+strconv.Quote(keyFile))
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "api.demo.test"),
		"api leaves the primary with the version that removes it and reads the push key from a file")
	if got := bindtest.Dig(t, primary, "shop.demo.test", "A"); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Errorf("shop.demo.test A: %v, want Detour's [127.0.0.11]", got)
	}
}

// A reload that changes a zone's push key and its marker's name at once moves the marker: the
// pusher it starts for the same primary reads the marker where the one it replaces left it, and
// its first push removes it there. Before, it knew only the new name, and the old one kept the
// last marker of the pusher before on the primary for good (a marker changed alone is moved).
func TestAReloadThatChangesThePushKeyAndMarkerLeavesNoMarkerAtItsOldName(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	_, configs := startReloadable(t, js, pushedShop(t, primary, "secret: "+strconv.Quote(secret)))
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT")) == 1 },
		"the first pusher's marker on the primary")

	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := pushedShopText(primary, "secret_file: "+strconv.Quote(keyFile))
	configs <- eventstest.Config(t, strings.Replace(text, "retry_interval: 100ms", "retry_interval: 100ms, marker: _moved.demo.test", 1))
	eventstest.Eventually(t, 5*time.Second, func() bool { return len(bindtest.Dig(t, primary, "_moved.demo.test", "TXT")) == 1 },
		"the marker at its new name, pushed with the key read from a file")
	if got := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT"); len(got) != 0 {
		t.Errorf("the marker's old name still holds %v, want it moved", got)
	}
}

// The marker a DNS server pushes names the configuration version its records were projected
// from, the one it started on and then each it applies, so that another server of a newer
// version pushes over them at its recheck should this one push last and stop (see
// push.olderConfig).
func TestTheMarkerNamesTheConfigurationVersionTheRecordsWereProjectedFrom(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString([]byte("detour test key, 32 bytes long!!"))
	primary := shopPrimary(t, "detour-key", secret)
	js := eventstest.Start(t)
	text := pushedShopText(primary, "secret: "+strconv.Quote(secret))
	first := eventstest.Config(t, text)
	first.Version = 5
	_, configs := startReloadable(t, js, first)
	marker := func(want string) func() bool {
		return func() bool {
			got := bindtest.Dig(t, primary, "_detour-state.demo.test", "TXT")
			return len(got) == 1 && strings.Contains(got[0], want)
		}
	}
	eventstest.Eventually(t, 5*time.Second, marker(`"config=5"`), "the marker of version 5")
	next := eventstest.Config(t, strings.Replace(text, "127.0.0.11:8081", "127.0.0.13:8081", 1))
	next.Version = 6
	configs <- next
	eventstest.Eventually(t, 5*time.Second, digEquals(t, primary, "shop.demo.test", "127.0.0.13"), "version 6's answer on the primary")
	eventstest.Eventually(t, 5*time.Second, marker(`"config=6"`), "the marker of version 6")
}

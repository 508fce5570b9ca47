package dnsupdater

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// unsignedAXFR reports the rcode an unsigned AXFR of zone from loopback gets.
func unsignedAXFR(t *testing.T, addr, zone string) int {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(zone)
	return rawExchange(t, addr, m, "", "", "", time.Now()).Rcode
}

func TestAReloadThatAddsATransferKeyRefusesUnsignedTransfersAtOnce(t *testing.T) {
	open := strings.Replace(signedConfig(), "    transfer_tsig: {name: "+xfrKey+`, secret: "`+xfrSecret+`"}`+"\n", "", 1)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, open))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return unsignedAXFR(t, srv.Addr(), "demo.test.") == dns.RcodeSuccess
	}, "an unsigned transfer of demo.test. before the key is added")

	configs <- eventstest.Config(t, signedConfig())
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return unsignedAXFR(t, srv.Addr(), "demo.test.") == dns.RcodeNotAuth
	}, "an unsigned transfer of demo.test. refused NOTAUTH after the reload that adds its key")
}

func TestAReloadThatRenamesATransferKeyTransfersToTheNewKeyOnly(t *testing.T) {
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, signedConfig()))
	rcode := func(key string) int {
		m := new(dns.Msg)
		m.SetAxfr("demo.test.")
		return rawExchange(t, srv.Addr(), m, key, dns.HmacSHA256, xfrSecret, time.Now()).Rcode
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return rcode(xfrKey) == dns.RcodeSuccess }, "a transfer signed with "+xfrKey)

	configs <- eventstest.Config(t, strings.Replace(signedConfig(), "name: "+xfrKey, "name: renamed-key.", 1))
	eventstest.Eventually(t, 5*time.Second, func() bool { return rcode("renamed-key.") == dns.RcodeSuccess }, "a transfer signed with renamed-key. after the reload")
	if r := rcode(xfrKey); r != dns.RcodeNotAuth {
		t.Errorf("a transfer signed with the key the reload took away: %s, want NOTAUTH", dns.RcodeToString[r])
	}
}

func TestAReloadWhoseKeyFileCannotBeReadKeepsTheKeyInForce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xfr.key")
	if err := os.WriteFile(file, []byte(xfrSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := strings.Replace(signedConfig(), `secret: "`+xfrSecret+`"`, `secret_file: "`+file+`"`, 1)
	js := eventstest.Start(t)
	srv, configs := startReloadable(t, js, eventstest.Config(t, fromFile))
	signedAXFR := func() int {
		m := new(dns.Msg)
		m.SetAxfr("demo.test.")
		return rawExchange(t, srv.Addr(), m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now()).Rcode
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return signedAXFR() == dns.RcodeSuccess }, "a signed transfer before the reload")

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	// The refused reload names a new record, then one that does not touch the key names
	// another: once the second is served, the first was refused.
	configs <- eventstest.Config(t, strings.Replace(fromFile, `records: [`, `records: ["refused IN TXT \"x\"", `, 1))
	configs <- eventstest.Config(t, strings.Replace(signedConfig(), `records: [`, `records: ["applied IN TXT \"x\"", `, 1))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return len(ask(t, srv.Addr(), "udp", "applied.demo.test.", dns.TypeTXT).Answer) == 1
	}, "the reload after the refused one served")
	if n := len(ask(t, srv.Addr(), "udp", "refused.demo.test.", dns.TypeTXT).Answer); n != 0 {
		t.Errorf("the reload whose key file is gone was applied: %d records of it served", n)
	}
	if r := signedAXFR(); r != dns.RcodeSuccess {
		t.Errorf("a signed transfer after the reloads: %s, want NOERROR", dns.RcodeToString[r])
	}
}

// Whoever applies a configuration chooses the key file; the server's operator chooses where it
// may be. A key file outside the server's credential directories is refused, at start and on a
// reload alike, whatever it holds: else the key could be any base64 file the server can read,
// and a transfer or a NOTIFY signed with it an oracle for guesses of it.
func TestAKeyFileOutsideTheCredentialDirectoriesIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xfr.key")
	if err := os.WriteFile(file, []byte(xfrSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := strings.Replace(signedConfig(), `secret: "`+xfrSecret+`"`, `secret_file: "`+file+`"`, 1)
	js := eventstest.Start(t)
	elsewhere, err := config.NewCredentialDirs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{JS: js.JS, Config: eventstest.Config(t, fromFile), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), CredentialDirs: elsewhere})
	if want := "new dns server: zones[0].transfer_tsig.secret_file: " + file + " is not in a credential directory of this process"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a server whose key file is outside its credential directories: %v, want an error starting %q", err, want)
	}
}

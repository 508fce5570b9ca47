package tsig

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A key rotated in its file (renamed over, as a secret manager or a Kubernetes volume does) is
// the one the server signs and verifies with within a recheck and a settle, without a new
// configuration; a rotation that breaks the file (not base64, empty, gone) keeps the key read
// before, logged once, and the log never holds a key.
func TestAKeyRotatedInItsFileSignsWithinARecheckAndABrokenFileKeepsTheKeyBefore(t *testing.T) {
	const recheck = time.Second
	const one, two = "b25lLWtleS1mb3ItdGhlLXRlc3Q=", "dHdvLWtleS1mb3ItdGhlLXRlc3Q="
	dir := t.TempDir()
	file := filepath.Join(dir, "xfr.key")
	write := func(s string) { t.Helper(); eventstest.ReplaceFile(t, file, s, false) }
	write(one + "\n")
	dirs, err := config.NewCredentialDirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	logs := &eventstest.Logs{}
	key, err := newKey(config.TSIG{Name: "xfr-key", Algorithm: "hmac-sha256", SecretFile: file}, dirs, zerolog.New(logs), clock.Now, recheck)
	if err != nil {
		t.Fatal(err)
	}
	// signsWith reports whether key signs as secret does, by the library's verification.
	signsWith := func(secret string) bool {
		t.Helper()
		m := new(dns.Msg)
		m.SetAxfr("demo.test.")
		m.SetTsig("xfr-key.", dns.HmacSHA256, 300, time.Now().Unix())
		signed, _, err := dns.TsigGenerateWithProvider(m, key, "", false)
		if err != nil {
			t.Fatal(err)
		}
		return dns.TsigVerify(signed, secret, "", false) == nil
	}
	if !signsWith(one) {
		t.Fatal("the key does not sign with the file's key")
	}
	write(two + "\n")
	for deadline := time.Now().Add(5 * time.Second); !signsWith(two); clock.advance(recheck) {
		if !signsWith(one) {
			t.Fatal("between the rotation and its use, the key signed with neither key")
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated key was not used")
		}
	}
	for _, broken := range []string{"not base64!\n", " \n"} {
		write(broken)
		for range 4 {
			clock.advance(recheck)
			if !signsWith(two) {
				t.Fatalf("after the file was broken (%q), the key no longer signs with the key before", broken)
			}
		}
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	clock.advance(recheck)
	if !signsWith(two) {
		t.Fatal("after the file was removed, the key no longer signs with the key before")
	}
	if n := strings.Count(logs.String(), "tsig key file not read again: the key keeps what it held"); n != 1 {
		t.Errorf("logged the broken file %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "tsig key file changed"); n != 1 {
		t.Errorf("logged the rotation %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), one) || strings.Contains(logs.String(), two) {
		t.Errorf("the log holds a key:\n%s", logs.String())
	}
	if _, err := newKey(config.TSIG{Name: "xfr-key", Algorithm: "hmac-sha256", SecretFile: file}, dirs, zerolog.Nop(), clock.Now, recheck); err == nil || err.Error() != "tsig.secret_file: open "+file+": no such file or directory" {
		t.Errorf("a key whose file is missing at first: %v", err)
	}
}

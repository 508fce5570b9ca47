package tsig

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

const testSecret = "c2VjcmV0LWtleS1mb3ItdGVzdHM="

// Key signs and verifies as miekg/dns's own provider does, for every algorithm, whatever the
// case of the key's name, and refuses its name with another algorithm.
func TestAKeyAgreesWithTheLibrarysProvider(t *testing.T) {
	for alg, name := range Algorithms {
		key, err := New(config.TSIG{Name: "Detour-Key", Algorithm: alg, Secret: testSecret}, config.CredentialDirs{}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg)
		m.SetUpdate("demo.test.")
		m.SetTsig("detour-key.", name, 300, time.Now().Unix())
		ours, _, err := dns.TsigGenerateWithProvider(m, key, "", false)
		if err != nil {
			t.Fatalf("%s: sign with Key: %v", alg, err)
		}
		if err := dns.TsigVerify(ours, testSecret, "", false); err != nil {
			t.Errorf("%s: the library does not verify what Key signed: %v", alg, err)
		}
		m.SetTsig("detour-key.", name, 300, time.Now().Unix())
		theirs, _, err := dns.TsigGenerate(m, testSecret, "", false)
		if err != nil {
			t.Fatalf("%s: sign with the library: %v", alg, err)
		}
		if err := dns.TsigVerifyWithProvider(theirs, key, "", false); err != nil {
			t.Errorf("%s: Key does not verify what the library signed: %v", alg, err)
		}
		bad := append([]byte(nil), theirs...)
		bad[len(bad)-7] ^= 1 // the MAC's last byte, before the original id, error and other length
		if err := dns.TsigVerifyWithProvider(bad, key, "", false); err == nil {
			t.Errorf("%s: Key verified a message whose MAC was changed", alg)
		}
		other := dns.HmacSHA1
		if name == other {
			other = dns.HmacSHA256
		}
		m.SetTsig("detour-key.", other, 300, time.Now().Unix())
		if _, _, err := dns.TsigGenerateWithProvider(m, key, "", false); err != dns.ErrKeyAlg {
			t.Errorf("%s: signing as %s: err = %v, want ErrKeyAlg", alg, other, err)
		}
	}
}

func TestAKeyThatCannotBeReadNamesTheFieldNotTheSecret(t *testing.T) {
	_, err := New(config.TSIG{Name: "k", Algorithm: "hmac-sha256", SecretEnv: "DETOUR_TEST_TSIG_UNSET"}, config.CredentialDirs{}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "tsig.secret_env: $DETOUR_TEST_TSIG_UNSET is not set") {
		t.Errorf("err = %v, want it to name $DETOUR_TEST_TSIG_UNSET", err)
	}
	t.Setenv("DETOUR_TEST_TSIG", "not base64!")
	if _, err := New(config.TSIG{Name: "k", Algorithm: "hmac-sha256", SecretEnv: "DETOUR_TEST_TSIG"}, config.CredentialDirs{}, zerolog.Nop()); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("with a bad key: err = %v, want an error that does not repeat the key", err)
	}
}

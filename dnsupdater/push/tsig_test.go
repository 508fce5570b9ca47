package push

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tsigKey signs and verifies as miekg/dns's own provider does, for every algorithm, whatever the
// case of the key's name.
func TestTSIGKeyAgreesWithTheLibrarysProvider(t *testing.T) {
	key, err := newTSIGKey("Detour-Key", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for alg := range algorithms {
		m := new(dns.Msg)
		m.SetUpdate("demo.test.")
		m.SetTsig("detour-key.", algorithms[alg], 300, time.Now().Unix())
		ours, _, err := dns.TsigGenerateWithProvider(m, key, "", false)
		if err != nil {
			t.Fatalf("%s: sign with tsigKey: %v", alg, err)
		}
		if err := dns.TsigVerify(ours, testSecret, "", false); err != nil {
			t.Errorf("%s: the library does not verify what tsigKey signed: %v", alg, err)
		}
		m.SetTsig("detour-key.", algorithms[alg], 300, time.Now().Unix())
		theirs, _, err := dns.TsigGenerate(m, testSecret, "", false)
		if err != nil {
			t.Fatalf("%s: sign with the library: %v", alg, err)
		}
		if err := dns.TsigVerifyWithProvider(theirs, key, "", false); err != nil {
			t.Errorf("%s: tsigKey does not verify what the library signed: %v", alg, err)
		}
		bad := append([]byte(nil), theirs...)
		bad[len(bad)-7] ^= 1 // the MAC's last byte, before the original id, error and other length
		if err := dns.TsigVerifyWithProvider(bad, key, "", false); err == nil {
			t.Errorf("%s: tsigKey verified a message whose MAC was changed", alg)
		}
	}
}

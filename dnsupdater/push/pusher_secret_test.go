package push

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

func TestATSIGKeyIsReadFromTheEnvironmentAndItsAbsenceNamesTheVariable(t *testing.T) {
	o := Options{Zone: "demo.test.", Push: config.Push{Server: "127.0.0.1:53",
		TSIG: config.TSIG{Name: "detour-key", Algorithm: "hmac-sha256", SecretEnv: "DETOUR_TEST_TSIG"}}}
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "tsig.secret_env: $DETOUR_TEST_TSIG is not set") {
		t.Errorf("without the variable: err = %v, want it to name $DETOUR_TEST_TSIG", err)
	}
	t.Setenv("DETOUR_TEST_TSIG", "not base64!")
	if _, err := New(o); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("with a bad key: err = %v, want an error that does not repeat the key", err)
	}
	t.Setenv("DETOUR_TEST_TSIG", "c2VjcmV0")
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tsig.New(config.TSIG{Name: "detour-key", Algorithm: "hmac-sha256", Secret: "c2VjcmV0"}, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.client.TsigProvider.(*tsig.Key); !got.Same(want) {
		t.Errorf("the client does not sign with the key from the environment")
	}
}

package push

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/rs/zerolog"
)

// A TSIG key rotated in its file while an UPDATE awaits the primary's answer leaves that
// exchange with the key it was signed with: the primary answers with the key of the request
// (RFC 8945 §5.3), and verifying its answer with the new one would fail a push the primary
// applied, to be sent again.
func TestAKeyRotatedInItsFileWhileAnUpdateAwaitsItsAnswerVerifiesTheAnswerWithTheKeyItWasSentWith(t *testing.T) {
	// Written long ago, as a secret manager's copy keeps its time: settled at once.
	file, dirs, write := eventstest.SecretFile(t, "tsig.key", testSecret)
	primary := startApplyingPrimary(t)
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(fmt.Sprintf(pushConfig, primary.addr, testSecret), `secret: "`+testSecret+`"`, `secret_file: "`+file+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	made := time.Now()
	p, err := New(Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, CredentialDirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	next := base64.StdEncoding.EncodeToString([]byte("the key after, 32 bytes long!!!!"))
	rotated, err := tsig.New(config.TSIG{Name: "detour-key", Algorithm: "hmac-sha256", Secret: next}, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	primary.set(func(ap *applyingPrimary) {
		ap.answering = func() {
			ap.answering = nil
			write(next)
			key := p.client.TsigProvider.(*tsig.Key)
			eventstest.Eventually(t, config.FileRecheck+5*time.Second, func() bool { return key.Same(rotated) },
				"the pusher's key rotated as its file was")
		}
	})

	// The key looks at its file again a recheck after it was made, by the system's clock: the
	// UPDATE goes a second before, so that the primary's answer, held until the key has rotated,
	// comes well within the client's 5 s.
	eventstest.Eventually(t, config.FileRecheck, func() bool { return time.Since(made) > config.FileRecheck-time.Second },
		"a second before the key looks at its file again")
	if _, err := p.push(t.Context(), desired(t, cfg, state.NewView(), 10)); err != nil {
		t.Errorf("an UPDATE the primary applied and answered with the key it was signed with: %v", err)
	}
}

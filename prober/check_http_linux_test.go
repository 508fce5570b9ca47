package prober

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// connectsUnder counts the sockets of this network namespace still connecting (SYN_SENT) to
// addr's port on loopback.
func connectsUnder(t *testing.T, addr netip.AddrPort) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", addr.Port())
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[2], want) && fs[3] == "02" {
			n++
		}
	}
	return n
}

// TestAConnectThatGetsNoAnswerIsGivenUpWithItsCheck: an https check (and any other the
// Transport runs) against an endpoint whose connects are never answered fails with timeout,
// and its connect is given up then, not left to the kernel's SYN retries: at a check a second,
// over a hundred of the prober's sockets for one such endpoint, one endpoint's worth for each
// of a region cut off.
func TestAConnectThatGetsNoAnswerIsGivenUpWithItsCheck(t *testing.T) {
	t.Parallel() // waits out its checks' timeouts and asserts no time
	addr := netip.MustParseAddrPort(eventstest.Blackhole(t))
	for _, kind := range []string{"https", "http"} {
		tg := target(t, kind, addr.String(), func(k *config.Check) {
			k.Timeout, k.BodyContains = config.Duration(100*time.Millisecond), "ok" // the Transport's
		})
		for range 5 {
			if o := Probe(context.Background(), tg, testCredentialDirs(t)); o.Class != ClassTimeout || o.Err != "context deadline exceeded" {
				t.Fatalf("%s: outcome %+v, want a timeout", kind, o)
			}
		}
		eventstest.Eventually(t, 2*time.Second, func() bool { return connectsUnder(t, addr) == 0 },
			"%s: the checks' connects given up as they ended (%d still connecting)", kind, connectsUnder(t, addr))
	}
}

package push

import (
	"testing"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
)

// startKnot runs Knot as the primary of demo.test, from primaryZone followed by extra, applying
// the UPDATEs signed with detour-key, and returns its ip:port.
func startKnot(t *testing.T, extra string) string {
	return knottest.Start(t, knottest.Zone{Name: "demo.test", File: primaryZone + extra,
		Key: &knottest.Key{Name: "detour-key", Algorithm: "hmac-sha256", Secret: testSecret}}).Addr
}

func TestOnARealKnotPrimaryAServerAtAnOlderStatePositionLeavesTheNewerState(t *testing.T) {
	olderLeavesNewer(t, startKnot(t, ""))
}

func TestOnARealKnotPrimaryTheLoserOfARaceForTheMarkerLeavesTheNewerState(t *testing.T) {
	raceLostToNewer(t, startKnot(t, ""))
}

func TestOnARealKnotPrimaryAWildcardTXTCoveringTheMarkersNameDoesNotStopPushes(t *testing.T) {
	wildcardDoesNotStopPushes(t, startKnot(t, wildcardTXT))
}

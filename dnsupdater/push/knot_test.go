package push

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/rs/zerolog"
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

func TestOnARealKnotPrimaryAFailoverRightAfterANameIsDelegatedKeepsTheDelegationsGlue(t *testing.T) {
	failoverAfterDelegation(t, startKnot(t, ""))
}

func TestOnARealKnotPrimaryServingAChildZoneAFailoverOfANameInTheChildStillReachesTheOthers(t *testing.T) {
	childZoneFailover(t, knottest.Start(t,
		knottest.Zone{Name: "demo.test", File: primaryZone + childDelegation, Key: &knottest.Key{Name: "detour-key", Algorithm: "hmac-sha256", Secret: testSecret}},
		knottest.Zone{Name: "sub.demo.test", File: childZone, Key: &knottest.Key{Name: "detour-key", Algorithm: "hmac-sha256", Secret: testSecret}}).Addr)
}

func TestOnARealKnotPrimaryThatTakesUpdatesFromOneAddressAPushLeavesFromTheAddressTheServerListensOn(t *testing.T) {
	// Knot applies signed UPDATEs from 127.0.0.2 only, the address Detour listens on beside
	// the host's 127.0.0.1, which the routing table prefers for a primary on 127.0.0.1.
	addr := knottest.Start(t, knottest.Zone{Name: "demo.test", File: primaryZone, UpdateFrom: "127.0.0.2",
		Key: &knottest.Key{Name: "detour-key", Algorithm: "hmac-sha256", Secret: testSecret}}).Addr
	js := eventstest.Start(t)
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, addr, testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	p := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, JS: js.JS, Source: "dns-test", Listen: "127.0.0.2:5353", Log: zerolog.New(zerolog.NewTestWriter(t))})
	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(dig(t, addr, "shop.demo.test", "A"), []string{"127.0.0.11", "127.0.0.12"})
	}, "Knot, taking UPDATEs from 127.0.0.2 only, serves Detour's first pool for shop.demo.test")
}

func TestOnARealKnotPrimaryTenThousandNamesFailOverInFewCompressedUPDATEs(t *testing.T) {
	tenThousandFailOver(t, startKnot(t, ""))
}

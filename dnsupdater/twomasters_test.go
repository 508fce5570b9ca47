package dnsupdater

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events/eventstest"
)

// TestAKnotSecondaryWithTwoDetourMastersFollowsTheOneLeftWithoutARetransfer: each server takes
// its serials by itself, so one may serve the same content under a later serial than the other
// (here it restarted after a crash, past the serials it had reserved). Knot, listing both as
// masters, holds that serial; the server stops, the zone changes, and the server left, which
// read the other's serial from the DNS stream, serves the change at a serial after it: Knot
// follows it, with no retransfer.
func TestAKnotSecondaryWithTwoDetourMastersFollowsTheOneLeftWithoutARetransfer(t *testing.T) {
	knottest.Skip(t)
	js := eventstest.Start(t)
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	cfg := eventstest.Config(t, fmt.Sprintf(secondaryConfig, knotAddr, `"www IN A 192.0.2.1"`, ""))
	a := startNamed(t, js, cfg, t.TempDir(), "dns-a")
	dirB := t.TempDir()
	b := startNamed(t, js, cfg, dirB, "dns-b")
	// B crashes: what survives is its serials file as it ran, not the one a clean stop writes.
	marks := filepath.Join(dirB, serialsFile)
	var reserved []byte
	eventstest.Eventually(t, 5*time.Second, func() bool {
		var err error
		reserved, err = os.ReadFile(marks)
		return err == nil
	}, "dns-b reserves its serials")
	b.stop()
	if err := os.WriteFile(marks, reserved, 0o644); err != nil {
		t.Fatal(err)
	}
	b = startNamed(t, js, cfg, dirB, "dns-b")
	addrA, addrB := a.srv.Addr(), b.srv.Addr()
	if sa, sb := serial(t, addrA), serial(t, addrB); !serialAfter(sb, sa) {
		t.Fatalf("want dns-b's serial after dns-a's for the same zone, got %d and %d", sb, sa)
	}
	knot := knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: addrB, Also: []string{addrA}})
	held := serial(t, addrB)
	eventstest.Eventually(t, 10*time.Second, func() bool { return soaSerial(knotAddr, "demo.test.") == held },
		"Knot at dns-b's serial %d", held)
	old := zoneRecords(t, knotAddr, "demo.test.")

	b.stop()
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serialAfter(serial(t, addrA), held) },
		"dns-a serves the change at a serial after dns-b's %d", held)
	// dns-a NOTIFYs Knot, which asks it for its SOA and finds it ahead.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left, secondary := zoneRecords(t, addrA, "demo.test."), zoneRecords(t, knotAddr, "demo.test.")
		if slices.Equal(left, secondary) && !slices.Equal(secondary, old) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Knot holds serial %d, dns-a serves %d; the secondary's zone differs from dns-a's\ndns-a:\n%s\nknot:\n%s\nknot's log:\n%s",
				soaSerial(knotAddr, "demo.test."), serial(t, addrA), strings.Join(left, "\n"), strings.Join(secondary, "\n"), knot.Log())
		}
	}
}

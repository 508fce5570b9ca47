package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// On a link 1.9 s a round trip (a cluster far away, or loaded), drill plan reads the state of
// every subject the configuration names (14 here), and the drills in force, at once: it answers
// within its 30 s, where it read them one after another and gave up, naming the cluster silent.
func TestDrillPlanAnswersWithinItsBoundOnALinkOfNearlyTwoSecondsARoundTrip(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	s := startBare(t)
	doc := strings.Replace(planDoc, `endpoints: [{address: "127.0.0.11:80"}]`, `endpoints: [{address: "127.0.0.11:80"}, {address: "127.0.0.13:80"}, {address: "127.0.0.14:80"}, {address: "127.0.0.15:80"}]`, 1)
	if code, out, errOut := run("apply", writeFile(t, "v1.yaml", doc), "--nats", s.URL, "-m", "first"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	d := writeFile(t, "drill.yaml", "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]\n")
	link := eventstest.NewSlowLink(t, s.URL)
	link.Delay(1900*time.Millisecond, 0)
	start := time.Now()
	code, out, errOut := run("drill", "plan", d, "--nats", link.URL)
	took := time.Since(start)
	if code != 0 || !strings.Contains(out, "shop/west") {
		t.Fatalf("drill plan: exit %d after %s, want 0 and the plan of shop/west:\n%s%s", code, took.Round(time.Millisecond), out, errOut)
	}
	t.Logf("drill plan answered in %s on a link of 1.9 s a round trip", took.Round(time.Millisecond))
}

package dnsupdater

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/bindtest"
	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// secondaryConfig is the zone a real Knot secondary follows; %[1]s is Knot's address, %[2]s
// the static records of the step.
const secondaryConfig = `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.53}]
    transfer_to: ["127.0.0.1"]
    notify: ["%[1]s"]
    records: [%[2]s]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    pools:
      - name: us-west
        endpoints: [{address: "127.0.0.11:8081"}]
      - name: us-east
        endpoints: [{address: "127.0.0.12:8081"}]
%[3]s`

// zoneRecords transfers zone from addr and returns its records in presentation form, sorted,
// the closing SOA left out.
func zoneRecords(t *testing.T, addr, zone string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(zone)
	return transferRecords(t, addr, m, &dns.Transfer{})
}

// transferRecords is zoneRecords through tr, m the AXFR request it sends.
func transferRecords(t *testing.T, addr string, m *dns.Msg, tr *dns.Transfer) []string {
	t.Helper()
	zone := m.Question[0].Name
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatalf("axfr %s from %s: %v", zone, addr, err)
	}
	var out []string
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("axfr %s from %s: %v", zone, addr, env.Error)
		}
		for _, rr := range env.RR {
			out = append(out, rr.String())
		}
	}
	if len(out) > 1 {
		out = out[:len(out)-1]
	}
	slices.Sort(out)
	return out
}

func TestAKnotSecondaryFollowsDetourThroughFailoversOverridesAndRestarts(t *testing.T) {
	knottest.Skip(t)
	checkzone, err := exec.LookPath("named-checkzone")
	if err != nil {
		t.Skip("named-checkzone (Debian package bind9) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	js := eventstest.Start(t)
	dataDir := t.TempDir()
	detourAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)

	var stop func()
	start := func(records, more string) {
		t.Helper()
		if stop != nil {
			stop()
		}
		srv, err := New(Options{
			JS: js.JS, Config: eventstest.Config(t, fmt.Sprintf(secondaryConfig, knotAddr, records, more)), Addr: detourAddr,
			DataDir: dataDir, Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1,
		})
		if err != nil {
			t.Fatalf("new server: %v", err)
		}
		stop = eventstest.Run(t, "dns server", srv.Run)
	}
	start(`"www IN A 192.0.2.1"`, "")
	knot := knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: detourAddr})

	step := 0
	var last uint32
	followed := func(what string) {
		t.Helper()
		step++
		// Every step changes the zone: wait for Detour's new serial, then for Knot's.
		eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, detourAddr) != last },
			"step %d (%s): Detour takes a new serial after %d", step, what, last)
		want := serial(t, detourAddr)
		last = want
		eventstest.Eventually(t, 10*time.Second, func() bool { return soaSerial(knotAddr, "demo.test.") == want },
			"step %d (%s): Knot at Detour's serial %d", step, what, want)
		detour, secondary := zoneRecords(t, detourAddr, "demo.test."), zoneRecords(t, knotAddr, "demo.test.")
		if !slices.Equal(detour, secondary) {
			t.Fatalf("step %d (%s): the secondary's zone differs from Detour's\ndetour:\n%s\nknot:\n%s", step, what,
				strings.Join(detour, "\n"), strings.Join(secondary, "\n"))
		}
		file := filepath.Join(t.TempDir(), "demo.test.zone")
		if err := os.WriteFile(file, []byte(strings.Join(secondary, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(checkzone, "demo.test", file).CombinedOutput(); err != nil {
			t.Fatalf("step %d (%s): named-checkzone refuses the transferred zone: %v\n%s", step, what, err, out)
		}
	}
	followed("first transfer")

	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	followed("failover to us-east")

	// An operator drains us-east: the override, and the transition the decider makes of it.
	publishOverride(t, js, events.TypeOverrideSet, "shop", "us-east", events.ActionDrain)
	publishState(t, js, events.TypeEndpointDrained, events.EndpointStateSubject("shop", "us-east", "127-0-0-12_8081"),
		events.Transition{App: "shop", Pool: "us-east", Endpoint: "127-0-0-12_8081", From: events.StatusUp, To: events.StatusDrained, Reason: "override"})
	followed("us-east drained by an operator: every pool down, fail open")
	publishOverride(t, js, events.TypeOverrideCleared, "shop", "us-east", "")
	endpointUp(t, js, "shop", "us-east", "127-0-0-12_8081")
	followed("override cleared")
	if got := transfers(knot.Log()); !slices.Equal(got, []string{"AXFR", "IXFR", "IXFR", "IXFR"}) {
		t.Errorf("want the first transfer by AXFR and the three changes after it by IXFR; Knot's transfers: %v\n%s", got, knot.Log())
	}

	start(`"www IN A 192.0.2.2"`, "")
	followed("restart with a changed record")
	start(`"www IN A 192.0.2.2"`, `  - name: blog
    fqdn: blog.demo.test
    pools: [{name: p1, endpoints: [{address: "127.0.0.31:80"}]}]
`)
	followed("restart with an added app")
	endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
	followed("failback after the restarts")
	// Each restart changes the configuration, which starts a new history: the secondary gets the
	// whole zone once, then IXFR again.
	if got := transfers(knot.Log()); len(got) != 7 || !slices.Equal(got[4:], []string{"AXFR", "AXFR", "IXFR"}) {
		t.Errorf("want whole transfers after each restart and IXFR after them; Knot's transfers: %v", got)
	}
}

// TestAKnotSecondaryFollowsDetourRestartedWithoutItsDataDir has Knot follow a Detour whose
// versions, faster than one a second, took its serial ahead of the clock, and which then starts
// again without its data dir (a container recreated without a volume): Knot ignores every
// serial not after the one it holds, so the restarted server must serve a later one, and Knot
// then follows its next change.
func TestAKnotSecondaryFollowsDetourRestartedWithoutItsDataDir(t *testing.T) {
	knottest.Skip(t)
	js := eventstest.Start(t)
	detourAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	cfg := eventstest.Config(t, fmt.Sprintf(secondaryConfig, knotAddr, `"www IN A 192.0.2.1"`, ""))
	start := func() func() {
		t.Helper()
		srv, err := New(Options{JS: js.JS, Config: cfg, Addr: detourAddr, DataDir: t.TempDir(), Name: "dns-test",
			Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1})
		if err != nil {
			t.Fatalf("new server: %v", err)
		}
		return eventstest.Run(t, "dns server", srv.Run)
	}
	following := func(what string) {
		t.Helper()
		// Polled by hand, so that a failure tells both serials as they were last.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			want, got := serial(t, detourAddr), soaSerial(knotAddr, "demo.test.")
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Knot holds serial %d, not Detour's %d, after 10s", what, got, want)
			}
		}
		if detour, secondary := zoneRecords(t, detourAddr, "demo.test."), zoneRecords(t, knotAddr, "demo.test."); !slices.Equal(detour, secondary) {
			t.Fatalf("%s: the secondary's zone differs from Detour's\ndetour:\n%s\nknot:\n%s", what, strings.Join(detour, "\n"), strings.Join(secondary, "\n"))
		}
	}
	stop := start()
	knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: detourAddr})
	following("first transfer")
	last := serial(t, detourAddr)
	for i := 0; int32(last-uint32(time.Now().Unix())) < 20; i++ {
		if i%2 == 0 {
			endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
		} else {
			endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081")
		}
		prev := last
		eventstest.Eventually(t, 2*time.Second, func() bool { last = serial(t, detourAddr); return last != prev }, "version %d served", i+1)
	}
	following("a burst of versions")
	stop()

	start()
	// Every pool down: shop answers both addresses (fail open), whichever it answered before.
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	endpointDown(t, js, "shop", "us-east", "127-0-0-12_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, detourAddr, "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.11", "127.0.0.12"})
	}, "the restarted server answers shop with both pools down")
	following("a change after the restart without the data dir")
}

// transfers lists the incoming transfers a Knot log records, in order: AXFR for a whole zone
// (asked as AXFR, or an IXFR answered AXFR-style), IXFR for an incremental one.
func transfers(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, "AXFR, incoming") && strings.Contains(line, "finished"):
			out = append(out, "AXFR")
		case strings.Contains(line, "IXFR, incoming") && strings.Contains(line, "finished"):
			out = append(out, "IXFR")
		}
	}
	return out
}

func publishOverride(t *testing.T, js *eventstest.Server, typ, app, pool, action string) {
	t.Helper()
	e, err := events.New(typ, "operator-test", time.Now(), events.Override{App: app, Pool: pool, Action: action, Reason: "test", By: "test@host"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(t.Context(), js.JS, events.OverrideSubject(app, pool, ""), e); err != nil {
		t.Fatal(err)
	}
}

func TestABINDSecondaryFollowsDetourByIXFR(t *testing.T) {
	if _, err := exec.LookPath("named"); err != nil {
		t.Skip("named (Debian package bind9) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	js := eventstest.Start(t)
	bindPort := proctest.FreePort(t)
	bindAddr := fmt.Sprintf("127.0.0.1:%d", bindPort)
	detour := startServer(t, js, eventstest.Config(t, fmt.Sprintf(secondaryConfig, bindAddr, `"www IN A 192.0.2.1"`, "")), "").srv.Addr()
	bind := bindtest.StartSecondary(t, "demo.test", detour, bindPort)
	at := func(want uint32) func() bool { return func() bool { return soaSerial(bindAddr, "demo.test.") == want } }
	first := serial(t, detour)
	eventstest.Eventually(t, 15*time.Second, at(first), "BIND at Detour's serial %d", first)
	if _, err := os.Stat(bind.Journal); err == nil {
		t.Fatalf("a journal before any change: the first transfer must be whole")
	}
	for i, change := range []func(){
		func() { endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081") },
		func() { endpointUp(t, js, "shop", "us-west", "127-0-0-11_8081") },
	} {
		before := serial(t, detour)
		change()
		eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, detour) != before }, "change %d: a new serial", i+1)
		want := serial(t, detour)
		eventstest.Eventually(t, 10*time.Second, at(want), "change %d: BIND at Detour's serial %d", i+1, want)
		if d, b := zoneRecords(t, detour, "demo.test."), zoneRecords(t, bindAddr, "demo.test."); !slices.Equal(d, b) {
			t.Fatalf("change %d: BIND's zone differs from Detour's\ndetour:\n%s\nbind:\n%s", i+1, strings.Join(d, "\n"), strings.Join(b, "\n"))
		}
	}
	// named journals what it applies incrementally: the changes came by IXFR.
	if fi, err := os.Stat(bind.Journal); err != nil || fi.Size() == 0 {
		t.Errorf("want BIND's journal %s written by IXFR, got %v; its log:\n%s", bind.Journal, err, bind.Log())
	}
}

// TestAKnotSecondaryFollowsADetourBoundToAnAddressTheRoutingTableDoesNotPrefer runs Detour on
// 127.0.0.2 (a host's service address beside its own) and a Knot secondary whose primary is
// that address, and which takes NOTIFYs from it alone, as secondaries do: a change must reach
// Knot through the NOTIFY, not an hour later at the SOA's refresh.
func TestAKnotSecondaryFollowsADetourBoundToAnAddressTheRoutingTableDoesNotPrefer(t *testing.T) {
	knottest.Skip(t)
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	js := eventstest.Start(t)
	srv, err := New(Options{
		JS: js.JS, Config: eventstest.Config(t, fmt.Sprintf(secondaryConfig, knotAddr, "", "")), Addr: "127.0.0.2:0",
		Name: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t)), CredentialDirs: tempCredentialDirs(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	detourAddr := srv.Addr()
	knot := knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: detourAddr})
	eventstest.Eventually(t, 10*time.Second, func() bool { return soaSerial(knotAddr, "demo.test.") == serial(t, detourAddr) },
		"Knot transfers the zone at its start")
	first := serial(t, detourAddr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, func() bool { return serial(t, detourAddr) != first }, "a new version served")
	want := serial(t, detourAddr)
	for deadline := time.Now().Add(10 * time.Second); soaSerial(knotAddr, "demo.test.") != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Knot holds serial %d, not Detour's %d, 10 s after the change; its log:\n%s", soaSerial(knotAddr, "demo.test."), want, knot.Log())
		}
	}
}

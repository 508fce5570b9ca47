package bindtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// Primary describes the zone BIND serves and the key that may update it.
type Primary struct {
	// Zone is the zone name without the trailing dot, e.g. "demo.test".
	Zone string
	// File is the zone file's text.
	File string
	// KeyName and Secret (base64) form the hmac-sha256 key updates must be signed with.
	KeyName, Secret string
	// Options are more statements of the zone's, e.g. "max-zone-ttl 10;". Default: none.
	Options string
	// More are more zones the same server is primary of, each name (without the trailing dot)
	// with its zone file's text, taking no updates: a child zone of Zone, say. Default: none.
	More map[string]string
}

// Start runs named for p with a generated named.conf in a temporary directory, waits until it
// answers, stops it when the test ends, and returns its ip:port.
func Start(t testing.TB, p Primary) string {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		t.Skip("named (Debian package bind9) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig (Debian package dnsutils) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	dir := t.TempDir()
	port := proctest.FreePort(t)
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	dnssec-validation no;
	allow-transfer { none; };
};
controls { };
key "%[3]s" { algorithm hmac-sha256; secret "%[4]s"; };
zone "%[5]s" { type primary; file "%[1]s/zone.db"; allow-update { key "%[3]s"; }; %[6]s };
`, dir, port, p.KeyName, p.Secret, p.Zone, p.Options)
	for name, file := range p.More {
		conf += fmt.Sprintf("zone %q { type primary; file %q; };\n", name, filepath.Join(dir, name+".db"))
		if err := os.WriteFile(filepath.Join(dir, name+".db"), []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zone.db"), []byte(p.File), 0o644); err != nil {
		t.Fatal(err)
	}
	runNamed(t, named, dir)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	eventstest.Eventually(t, 15*time.Second, func() bool {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(p.Zone), dns.TypeSOA)
		r, _, err := c.Exchange(m, addr)
		return err == nil && r.Rcode == dns.RcodeSuccess
	}, "named answering on %s", addr)
	return addr
}

// runNamed runs named with dir/named.conf until the test ends, and returns its output so far.
func runNamed(t testing.TB, named, dir string) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, named, "-g", "-n", "1", "-c", filepath.Join(dir, "named.conf"))
	out := &proctest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start named: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("named output:\n%s", out.String())
		}
	})
	return out.String
}

// Secondary is a running BIND secondary.
type Secondary struct {
	// Log returns named's output so far.
	Log func() string
	// Journal is the zone's journal file: named writes it when it applies an incremental
	// transfer (IXFR), never for a whole one.
	Journal string
}

// StartSecondary runs named as a secondary of zone (without the trailing dot), transferring it
// from primary (ip:port) and accepting its NOTIFYs, on 127.0.0.1:port.
func StartSecondary(t testing.TB, zone, primary string, port int) Secondary {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		t.Skip("named (Debian package bind9) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	host, pport, _ := net.SplitHostPort(primary)
	dir := t.TempDir()
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	dnssec-validation no;
	allow-transfer { 127.0.0.0/8; };
};
controls { };
logging { category xfer-in { default_stderr; }; category notify { default_stderr; }; };
zone "%[3]s" { type secondary; file "%[1]s/zone.db"; primaries { %[4]s port %[5]s; }; allow-notify { %[4]s; }; request-ixfr yes; };
`, dir, port, zone, host, pport)
	if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return Secondary{Log: runNamed(t, named, dir), Journal: filepath.Join(dir, "zone.db.jnl")}
}

// Dig asks the server at addr with the dig command and returns the answer data, sorted.
func Dig(t testing.TB, addr, name, qtype string) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("dig", "@"+host, "-p", port, "+short", "+norecurse", "+time=1", "+tries=1", name, qtype).Output()
	if err != nil {
		t.Fatalf("dig %s %s: %v", name, qtype, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 1 && lines[0] == "" {
		lines = nil
	}
	slices.Sort(lines)
	return lines
}

package knottest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// NSID is the identity knotd reports to a query that asks for it (RFC 5001).
const NSID = "knot.test"

// Knot is a running knotd.
type Knot struct {
	// Addr is the ip:port it answers on, over UDP and TCP.
	Addr string
	log  *proctest.Output
	// socket is knotd's control socket.
	socket string
}

// Log returns what knotd has logged so far.
func (k *Knot) Log() string { return k.log.String() }

// Control runs knotc with args against this knotd, as an operator would, and returns an error
// with its output when it fails.
func (k *Knot) Control(args ...string) error {
	out, err := exec.Command("knotc", append([]string{"-s", k.socket}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("knotc %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Zone is one zone Knot serves.
type Zone struct {
	// Name is the zone name without the trailing dot, e.g. "demo.test".
	Name string
	// File is the zone file's text, for a primary zone; for a secondary zone, the copy it holds
	// when it starts (a zone migrated from another primary), if any.
	File string
	// Primary is the ip:port of the primary to transfer the zone from, for a secondary zone;
	// Knot also accepts its NOTIFYs.
	Primary string
	// Also lists further primaries, tried after Primary in order, whose NOTIFYs Knot accepts
	// too: a secondary with two masters.
	Also []string
	// Key, when set, signs a secondary zone's queries and transfers from the primary, and
	// every NOTIFY from it must be signed with it (Knot's remote and ACL each name the key);
	// a primary zone applies the UPDATEs signed with it (RFC 2136).
	Key *Key
	// UpdateFrom, when set, is the only address a primary zone applies those UPDATEs from (its
	// update ACL names it as well as the key); Knot refuses one from elsewhere.
	UpdateFrom string
}

// Key is a TSIG key as Knot's configuration names it.
type Key struct {
	// Name is the key's name, e.g. "xfr-key".
	Name string
	// Algorithm is hmac-sha256, hmac-sha512…
	Algorithm string
	// Secret is the base64 key.
	Secret string
}

// Skip skips the test when knotd is not installed.
func Skip(t testing.TB) string {
	t.Helper()
	knotd, err := exec.LookPath("knotd")
	if err != nil {
		t.Skip("knotd (Debian package knot) is not installed: run deployments/install-packages.sh deployments/packages/test.txt")
	}
	return knotd
}

// Start runs knotd for zones on a free loopback port, as StartOn does.
func Start(t testing.TB, zones ...Zone) *Knot {
	t.Helper()
	Skip(t)
	return StartOn(t, proctest.FreePort(t), zones...)
}

// StartOn runs knotd for zones on 127.0.0.1:port with a generated configuration in a temporary
// directory, waits until it answers for every zone it holds a file of (every primary zone, and
// each secondary zone that starts from a copy), and stops it when the test ends.
// Every zone may be transferred to loopback clients. Knot serves EDNS Client Subnet (RFC 7871),
// as Detour does: with it off (Knot's default) it ignores the option and echoes it in no reply,
// and a reply to a query carrying one would compare with nothing.
func StartOn(t testing.TB, port int, zones ...Zone) *Knot {
	t.Helper()
	knotd := Skip(t)
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, `server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
    udp-max-payload: 1232
    nsid: "%[3]s"
    edns-client-subnet: on
log:
  - target: stderr
    any: debug
database:
    storage: "%[1]s"
template:
  - id: default
    storage: "%[1]s"
    semantic-checks: off
    journal-content: changes
    zonefile-sync: -1
    zonefile-load: whole
`, dir, port, NSID)
	var keys, remotes, zoneConf strings.Builder
	// addKey defines k once, though several zones name it.
	defined := map[string]bool{}
	addKey := func(k *Key) {
		if !defined[k.Name] {
			defined[k.Name] = true
			fmt.Fprintf(&keys, "  - id: %s\n    algorithm: %s\n    secret: %s\n", k.Name, k.Algorithm, k.Secret)
		}
	}
	acls := strings.Builder{}
	acls.WriteString("  - id: transfer\n    address: 127.0.0.0/8\n    action: transfer\n")
	for i, z := range zones {
		fmt.Fprintf(&zoneConf, "  - domain: %s\n    file: \"%s/%s.zone\"\n", z.Name, dir, z.Name)
		if z.File != "" {
			if err := os.WriteFile(filepath.Join(dir, z.Name+".zone"), []byte(z.File), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if z.Primary != "" {
			k := z.Key
			if k != nil {
				addKey(k)
			}
			var ids, hosts []string
			for j, primary := range append([]string{z.Primary}, z.Also...) {
				host, p, _ := net.SplitHostPort(primary)
				id := fmt.Sprintf("primary%d-%d", i, j)
				fmt.Fprintf(&remotes, "  - id: %s\n    address: %s@%s\n", id, host, p)
				if k != nil {
					fmt.Fprintf(&remotes, "    key: %s\n", k.Name)
				}
				ids, hosts = append(ids, id), append(hosts, host)
			}
			fmt.Fprintf(&acls, "  - id: notify%d\n    address: [%s]\n    action: notify\n", i, strings.Join(hosts, ", "))
			if k != nil {
				fmt.Fprintf(&acls, "    key: %s\n", k.Name)
			}
			fmt.Fprintf(&zoneConf, "    master: [%s]\n    acl: [transfer, notify%d]\n", strings.Join(ids, ", "), i)
			continue
		}
		if k := z.Key; k != nil {
			addKey(k)
			fmt.Fprintf(&acls, "  - id: update%d\n    key: %s\n    action: update\n", i, k.Name)
			if z.UpdateFrom != "" {
				fmt.Fprintf(&acls, "    address: %s\n", z.UpdateFrom)
			}
			fmt.Fprintf(&zoneConf, "    acl: [transfer, update%d]\n", i)
		} else {
			zoneConf.WriteString("    acl: transfer\n")
		}
	}
	if keys.Len() > 0 {
		conf.WriteString("key:\n" + keys.String())
	}
	if remotes.Len() > 0 {
		conf.WriteString("remote:\n" + remotes.String())
	}
	conf.WriteString("acl:\n" + acls.String())
	conf.WriteString("zone:\n" + zoneConf.String())
	confPath := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	socket := filepath.Join(dir, "knot.sock")
	cmd := exec.CommandContext(ctx, knotd, "-c", confPath, "-s", socket)
	out := &proctest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start knotd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("knotd output:\n%s", out.String())
		}
	})
	k := &Knot{Addr: fmt.Sprintf("127.0.0.1:%d", port), log: out, socket: socket}
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	for _, z := range zones {
		if z.File == "" {
			continue // a secondary without a copy answers once it has transferred one
		}
		eventstest.Eventually(t, 15*time.Second, func() bool {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(z.Name), dns.TypeSOA)
			r, _, err := c.Exchange(m, k.Addr)
			return err == nil && r.Rcode == dns.RcodeSuccess
		}, "knotd answering for %s on %s", z.Name, k.Addr)
	}
	return k
}

package main

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

// inNetns is set in the copy of the test binary that runs in a network namespace of its own.
const inNetns = "REGIONBENCH_TEST_NETNS"

func TestTheFirewallRefusesTheRegionAsADeadListenerWouldAndAdmitsItAgain(t *testing.T) {
	if os.Getenv(inNetns) == "" {
		// Never the host's firewall: the test runs again in a namespace of its own.
		if os.Geteuid() != 0 {
			t.Skip("needs root: it runs in a network namespace of its own")
		}
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("needs nft (Debian package nftables)")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
		cmd.Env = append(os.Environ(), inNetns+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
		}
		return
	}
	if err := benchenv.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	region := []netip.AddrPort{netip.AddrPortFrom(addr(1, 0), 80), netip.AddrPortFrom(addr(1, 9999), 80)}
	backup := netip.AddrPortFrom(addr(2, 0), 80)
	for _, a := range append(region, backup) {
		l, err := net.Listen("tcp4", a.String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go acceptAndClose(l)
	}
	dial := func(a netip.AddrPort) error {
		c, err := net.DialTimeout("tcp4", a.String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	answers := func(when string) {
		t.Helper()
		for _, a := range append(region, backup) {
			if err := dial(a); err != nil {
				t.Errorf("%s: %s: %v, want it to answer", when, a, err)
			}
		}
	}
	refused := func(when string) {
		t.Helper()
		for _, a := range region {
			if err := dial(a); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%s: %s: %v, want connection refused", when, a, err)
			}
		}
		if err := dial(backup); err != nil {
			t.Errorf("%s: the backup %s: %v, want it to answer", when, backup, err)
		}
	}
	log := filepath.Join(t.TempDir(), "nft.log")
	fw, err := startFirewall(log)
	if err != nil {
		t.Fatal(err)
	}
	answers("before the rule")
	if _, _, err := fw.refuse(); err != nil {
		t.Fatal(err)
	}
	refused("with the rule in")
	if _, _, err := fw.admit(); err != nil {
		t.Fatal(err)
	}
	answers("once the rule is out")
	if _, _, err := fw.refuse(); err != nil {
		t.Fatal(err)
	}
	fw.stop()
	// The next region's firewall starts with none of the last one's rules.
	if fw, err = startFirewall(log); err != nil {
		t.Fatal(err)
	}
	defer fw.stop()
	answers("with a new firewall after a rule left in")
}

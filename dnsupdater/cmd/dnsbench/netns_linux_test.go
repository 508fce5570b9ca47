package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// netnsHelperEnv, when set, makes the test binary a dnsbench that calls isolate first, as run
// does; the run it starts again writes the namespace it is in and the report's network line to
// the file netnsHelperEnv names.
const netnsHelperEnv = "DNSBENCH_NETNS_HELPER"

func netnsHelper(out string) int {
	where, err := isolate(true)
	switch {
	case err != nil:
		_ = os.WriteFile(out, []byte(err.Error()), 0o644)
		return 100
	case where.Done:
		return where.Status
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		ns = err.Error()
	}
	_ = os.WriteFile(out, []byte(ns+"\n"+whereLine(where)), 0o644)
	return 3
}

// TestDnsbenchRunsInANetworkNamespaceOfItsOwn holds the report's network line to where the
// servers and dnsperf run. What the namespace holds, and the signals and exit status passed
// between dnsbench and the run, are benchenv's tests.
func TestDnsbenchRunsInANetworkNamespaceOfItsOwn(t *testing.T) {
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), netnsHelperEnv+"="+out)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		b, _ := os.ReadFile(out)
		t.Fatalf("dnsbench: %v (%q), want the run's status, 3", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, line, _ := strings.Cut(string(b), "\n")
	if !strings.HasPrefix(ns, "net:[") || ns == host {
		t.Errorf("the run is in %q, want a network namespace other than the host's, %s", ns, host)
	}
	if want := "dnsbench: in a network namespace of its own, only its loopback up (no firewall rule or connection tracking of the host's on the path)"; line != want {
		t.Errorf("the report's network line: %q, want %q", line, want)
	}
}

func TestWithNetnsFalseTheReportSaysTheHostsNamespace(t *testing.T) {
	where, err := isolate(false)
	if got, want := whereLine(where), "dnsbench: in the host's network namespace (-netns=false)"; err != nil || where.Done || where.Own || got != want {
		t.Errorf("isolate(false): %+v, %v; network line %q, want %q", where, err, got, want)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/detourdev/detour/prober/benchenv"
)

// isolateEnv, when set, makes the test binary a regionbench that calls isolate first, as run
// does; the run it starts again writes the namespace it is in and where isolate says it is to
// the file isolateEnv names.
const isolateEnv = "REGIONBENCH_TEST_ISOLATE"

// runEnv, when set, makes the test binary regionbench itself: it runs run() with its arguments.
const runEnv = "REGIONBENCH_TEST_RUN"

func TestMain(m *testing.M) {
	if os.Getenv(runEnv) != "" {
		benchenv.Exit(run())
	}
	if out := os.Getenv(isolateEnv); out != "" {
		where, err := isolate()
		switch {
		case err != nil:
			_ = os.WriteFile(out, []byte(err.Error()), 0o644)
			os.Exit(100)
		case where.Done:
			os.Exit(where.Status)
		}
		ns, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			ns = err.Error()
		}
		_ = os.WriteFile(out, []byte(ns+"\n"+where.String()), 0o644)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestRegionbenchRunsInANetworkNamespaceOfItsOwn(t *testing.T) {
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), isolateEnv+"="+out)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		b, _ := os.ReadFile(out)
		t.Fatalf("regionbench: %v (%q), want the run's status, 3", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, where, _ := strings.Cut(string(b), "\n")
	if !strings.HasPrefix(ns, "net:[") || ns == host {
		t.Errorf("the run is in %q, want a network namespace other than the host's, %s", ns, host)
	}
	if own := (benchenv.Netns{Own: true}).String(); where != own {
		t.Errorf("the run says it is in %q, want %q", where, own)
	}
}

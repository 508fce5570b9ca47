package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/detourdev/detour/prober/benchenv"
	"github.com/detourdev/detour/prober/benchenv/benchenvtest"
)

// runEnv, when set, makes the test binary probebench itself: it runs run() with its
// arguments; the benchmark's run, once in a namespace of its own (PROBEBENCH_NETNS set),
// first writes the namespace it is in to the file runEnv names.
const runEnv = "PROBEBENCH_TEST_RUN"

func TestMain(m *testing.M) {
	if nsFile := os.Getenv(runEnv); nsFile != "" {
		if os.Getenv("PROBEBENCH_NETNS") != "" && !slices.Contains(os.Args, "-role=prober") {
			ns, err := os.Readlink("/proc/self/ns/net")
			if err != nil {
				ns = err.Error()
			}
			_ = os.WriteFile(nsFile, []byte(ns), 0o644)
		}
		os.Exit(run())
	}
	os.Exit(m.Run())
}

// TestProbebenchRunsInANetworkNamespaceOfItsOwn runs a benchmark of one endpoint as root and
// holds its report's first line to where the run was.
func TestProbebenchRunsInANetworkNamespaceOfItsOwn(t *testing.T) {
	benchenvtest.NeedNetns(t)
	nsFile := filepath.Join(t.TempDir(), "netns")
	cmd := exec.Command(os.Args[0], "-tcp=1", "-http=0", "-skip-peer", "-compare-scale=0", "-duration=200ms", "-warmup=0")
	cmd.Env = append(os.Environ(), runEnv+"="+nsFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probebench: %v\n%s", err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	own := benchenv.Netns{Own: true}
	if want := "probebench: in " + own.String() + ";"; !strings.HasPrefix(first, want) {
		t.Errorf("the report's first line: %q, want it to start %q", first, want)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ran, err := os.ReadFile(nsFile)
	if err != nil || !strings.HasPrefix(string(ran), "net:[") || string(ran) == host {
		t.Errorf("the benchmark ran in %q (%v), want a network namespace other than the host's, %s", ran, err, host)
	}
}

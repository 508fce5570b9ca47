package main

import (
	"testing"

	"github.com/detourdev/detour/prober/benchenv"
	"github.com/detourdev/detour/prober/benchenv/benchenvtest"
)

// netnsHelperEnv, when set, makes the test binary a dnsbench that calls isolate first, as run
// does; the run it starts again writes the namespace it is in and the report's network line to
// the file netnsHelperEnv names.
const netnsHelperEnv = "DNSBENCH_NETNS_HELPER"

func netnsHelper(out string) int {
	return benchenvtest.PlayIsolate(out, func() (benchenv.Netns, error) { return isolate(true) }, whereLine)
}

// TestDnsbenchRunsInANetworkNamespaceOfItsOwn holds the report's network line to where the
// servers and dnsperf run. What the namespace holds, and the signals and exit status passed
// between dnsbench and the run, are benchenv's tests.
func TestDnsbenchRunsInANetworkNamespaceOfItsOwn(t *testing.T) {
	line := benchenvtest.RunsInANamespaceOfItsOwn(t, "dnsbench", netnsHelperEnv)
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

package main

import (
	"os"
	"testing"

	"github.com/detourdev/detour/prober/benchenv"
	"github.com/detourdev/detour/prober/benchenv/benchenvtest"
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
		os.Exit(benchenvtest.PlayIsolate(out, isolate, benchenv.Netns.String))
	}
	os.Exit(m.Run())
}

func TestRegionbenchRunsInANetworkNamespaceOfItsOwn(t *testing.T) {
	where := benchenvtest.RunsInANamespaceOfItsOwn(t, "regionbench", isolateEnv)
	if own := (benchenv.Netns{Own: true}).String(); where != own {
		t.Errorf("the run says it is in %q, want %q", where, own)
	}
}

package main

import (
	"os"
	"os/exec"
	"testing"
)

// touchEnv, when set, makes the test binary a child that touches touchBytes of memory and exits.
const touchEnv = "REGIONBENCH_TEST_TOUCH"

const touchBytes = 64 << 20

func TestTheLoadGeneratorsPeakRSSIsCountedInBytes(t *testing.T) {
	if os.Getenv(touchEnv) != "" {
		b := make([]byte, touchBytes)
		for i := range b {
			b[i] = 1
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), touchEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the child that touches %d MiB: %v\n%s", touchBytes>>20, err, out)
	}
	if rss := peakRSS(cmd.ProcessState); rss < touchBytes || rss > 16*touchBytes {
		t.Errorf("a child that touched %d MiB peaked at %d bytes", touchBytes>>20, rss)
	}
}

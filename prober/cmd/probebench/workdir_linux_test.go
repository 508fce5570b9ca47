package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/prober/benchenv/benchenvtest"
)

// TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess: timeout(1) and kill stop a run with
// SIGTERM, which the program passes on to its run in a namespace of its own; the run removes its
// work directory and leaves no process it started.
func TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-tcp=1", "-http=0", "-skip-peer", "-compare-scale=0", "-duration=60s", "-warmup=0")
	cmd.Env = append(os.Environ(), runEnv+"="+filepath.Join(root, "netns"), "TMPDIR="+root)
	cmd.Stderr = os.Stderr
	run := benchenvtest.StartReported(t, "probebench", cmd)
	run.WaitFor(t, "-role=prober", "prober", 30*time.Second)
	run.StopBy(t, syscall.SIGTERM, 20*time.Second)
	benchenvtest.NoneMatch(t, filepath.Join(root, "probebench-*"))
	run.NoneLeft(t)
}

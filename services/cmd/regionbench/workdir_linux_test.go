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

// detourScript is a Detour role that never starts and takes a second to stop, while other
// processes of the run stop at once.
const detourScript = "#!/bin/sh\ntrap 'sleep 1; exit 0' TERM\nwhile :; do sleep 0.1; done\n"

// TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess: timeout(1) and kill stop a run with
// SIGTERM, which the program passes on to its run in a namespace of its own; the run removes its
// work directory, where NATS is writing, and leaves no process it started, and ends by the
// signal, whichever of its processes end first.
func TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess(t *testing.T) {
	benchenvtest.NeedNetns(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft (Debian package nftables) is not installed")
	}
	bin := t.TempDir()
	for name, script := range map[string]string{"dnsperf": "#!/bin/sh\nexit 0\n", "detour": detourScript} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-n=10", "-detour="+filepath.Join(bin, "detour"))
	cmd.Env = append(os.Environ(), runEnv+"=1", "TMPDIR="+root, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stderr = os.Stderr
	run := benchenvtest.StartReported(t, "regionbench", cmd)
	run.WaitFor(t, "sleep 0.1", "Detour role", 30*time.Second)
	run.StopBy(t, syscall.SIGTERM, 30*time.Second)
	benchenvtest.NoneMatch(t, filepath.Join(root, "regionbench-*"))
	run.NoneLeft(t)
}

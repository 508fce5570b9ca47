package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// detourScript is a Detour role that never starts and takes a second to stop, while other
// processes of the run stop at once.
const detourScript = "#!/bin/sh\ntrap 'sleep 1; exit 0' TERM\nwhile :; do sleep 0.1; done\n"

// TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess: timeout(1) and kill stop a run with
// SIGTERM, which the program passes on to its run in a namespace of its own; the run removes its
// work directory, where NATS is writing, and leaves no process it started, and ends by the
// signal, whichever of its processes end first.
func TestARunStoppedBySIGTERMLeavesNoWorkDirectoryOrProcess(t *testing.T) {
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	if first, err := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(first, "regionbench: in ") {
		t.Fatalf("the report's first line: %q, %v", first, err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(strings.Join(inGroup(pgid), "\n"), "sleep 0.1"); {
		if time.Now().After(deadline) {
			t.Fatalf("Detour's roles not started within 30 s; the process group holds %q", inGroup(pgid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	select {
	case err := <-ended:
		if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
			t.Errorf("regionbench after SIGTERM: %v, want exit status %d", err, 128+int(syscall.SIGTERM))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("regionbench did not end within 30 s of SIGTERM")
	}
	if left, _ := filepath.Glob(filepath.Join(root, "regionbench-*")); len(left) != 0 {
		t.Errorf("work directories left behind: %v", left)
	}
	for deadline := time.Now().Add(5 * time.Second); len(inGroup(pgid)) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("processes regionbench started still run 5 s after it ended: %q", inGroup(pgid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inGroup lists the command lines of the live processes (zombies left out) of process group
// pgid.
func inGroup(pgid int) []string {
	ents, _ := os.ReadDir("/proc")
	var cmds []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After the command name, in parentheses: state, ppid, pgrp.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmds = append(cmds, string(bytes.ReplaceAll(c, []byte{0}, []byte{' '})))
	}
	return cmds
}

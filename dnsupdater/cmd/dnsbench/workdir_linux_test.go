package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runHelperEnv, when set, makes the test binary dnsbench: it runs run() with its arguments.
const runHelperEnv = "DNSBENCH_RUN_HELPER"

// TestARunWhoseReportsReaderLeftLeavesNoWorkDirectoryOrServer sends a run's report to a
// socket whose reader leaves after the first line: the run's next write finds no reader, and
// the run stops, removes its work directory and its servers, and ends with the status of a
// command that SIGPIPE killed.
func TestARunWhoseReportsReaderLeftLeavesNoWorkDirectoryOrServer(t *testing.T) {
	fakeDNSPerf(t)
	readerLeaves(t, socketPair, 60*time.Second)
}

// TestARunWhoseReportsReaderLeftStopsWithoutWaitingForItsNextLine pipes a run's report into
// a reader that leaves after the first line, as head does, while a measurement runs (dnsperf
// for 60 s here; a default run writes its next line after minutes of them): the run stops
// then, not at its next write.
func TestARunWhoseReportsReaderLeftStopsWithoutWaitingForItsNextLine(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\nexec sleep 60\n")
	readerLeaves(t, os.Pipe, 20*time.Second)
}

// socketPair is os.Pipe over a connected pair of Unix stream sockets.
func socketPair() (r, w *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "report-r"), os.NewFile(uintptr(fds[1]), "report-w"), nil
}

// readerLeaves runs dnsbench with its report written to w of pipe() and a reader of r that
// leaves after the first line, and holds the run to ending within the time given, with the
// status of a command SIGPIPE killed, and to leaving neither its work directory nor any
// process it started.
func readerLeaves(t *testing.T, pipe func() (r, w *os.File, err error), within time.Duration) {
	t.Helper()
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-netns=false", "-only=detour", "-rounds=1", "-latency=false", "-duration=1s")
	cmd.Env = append(os.Environ(), runHelperEnv+"=1", "TMPDIR="+root)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	first, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if want := "dnsbench: in the host's network namespace (-netns=false)\n"; err != nil || first != want {
		t.Fatalf("the report's first line: %q, %v; want %q", first, err, want)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	select {
	case err = <-ended:
	case <-time.After(within):
		t.Fatalf("dnsbench did not end within %s of its report's reader leaving", within)
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGPIPE) {
		t.Errorf("dnsbench: %v, want exit status %d, as a command SIGPIPE killed", err, 128+int(syscall.SIGPIPE))
	}
	if left, _ := filepath.Glob(filepath.Join(root, "dnsbench-*")); len(left) != 0 {
		t.Errorf("work directories left behind: %v", left)
	}
	// The servers dnsbench started are in its process group (the test made it one).
	for deadline := time.Now().Add(5 * time.Second); !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH); {
		if time.Now().After(deadline) {
			t.Fatalf("processes dnsbench started (process group %d) still run 5 s after it ended", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTheWorkDirectoryIsInMemoryUnlessTMPDIRNamesOne(t *testing.T) {
	if !shmUsable() {
		t.Skipf("%s is not a writable tmpfs with %d MB free on this machine", shm, minShm>>20)
	}
	t.Setenv("TMPDIR", "")
	if got := workRoot(); got != shm {
		t.Errorf("work root = %q, want %s", got, shm)
	}
	t.Setenv("TMPDIR", t.TempDir())
	if got := workRoot(); got != "" {
		t.Errorf("with TMPDIR set, work root = %q, want the temporary directory (\"\")", got)
	}
}

func TestTheWorkDirectoryIsNotPutOnASmallTmpfs(t *testing.T) {
	for _, c := range []struct {
		name string
		st   unix.Statfs_t
		want bool
	}{
		{name: "a tmpfs with 24 GB free", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Bavail: 6 << 20}, want: true},
		{name: "a container's 64 MB /dev/shm", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Bavail: 16 << 10}, want: false},
		{name: "a large tmpfs nearly full", st: unix.Statfs_t{Type: unix.TMPFS_MAGIC, Bsize: 4096, Blocks: 6 << 20, Bavail: 100}, want: false},
		{name: "a disk", st: unix.Statfs_t{Type: unix.EXT4_SUPER_MAGIC, Bsize: 4096, Bavail: 6 << 20}, want: false},
	} {
		if got := roomy(c.st); got != c.want {
			t.Errorf("%s: roomy = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestARunStoppedBySIGTERMLeavesNoWorkDirectory: timeout(1) and kill end a run with SIGTERM. The
// signal lands in the run's last measurement: the run reports nothing (a measurement cut short
// is no result) and ends with the status of a command SIGTERM killed.
func TestARunStoppedBySIGTERMLeavesNoWorkDirectory(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\nexec sleep 60\n")
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-netns=false", "-only=detour", "-rounds=1", "-latency=false", "-duration=1s")
	cmd.Env = append(os.Environ(), runHelperEnv+"=1", "TMPDIR="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	for deadline := time.Now().Add(30 * time.Second); ; {
		if left, _ := filepath.Glob(filepath.Join(root, "dnsbench-*", "dnsperf-*")); len(left) > 0 {
			break // dnsperf runs
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsbench did not start dnsperf within 30 s")
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
			t.Errorf("dnsbench: %v, want exit status %d, as a command SIGTERM killed", err, 128+int(syscall.SIGTERM))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dnsbench did not end within 60 s of SIGTERM")
	}
	if want := "dnsbench: in the host's network namespace (-netns=false)\n\n"; out.String() != want {
		t.Errorf("the report of a run SIGTERM stopped:\n%s\nwant its first line alone, %q", out.String(), want)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "dnsbench-*")); len(left) != 0 {
		t.Errorf("work directories left behind: %v", left)
	}
}

// TestARunKilledLeavesNoServerOrDNSPerfRunning: a run the OOM killer ends (SIGKILL, which it
// cannot catch) takes its servers and dnsperf with it.
func TestARunKilledLeavesNoServerOrDNSPerfRunning(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\nexec sleep 60\n")
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-netns=false", "-only=detour", "-rounds=1", "-latency=false", "-duration=1s")
	cmd.Env = append(os.Environ(), runHelperEnv+"=1", "TMPDIR="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(strings.Join(inGroup(pgid), "\n"), "sleep 60"); {
		if time.Now().After(deadline) {
			t.Fatalf("dnsbench did not start dnsperf within 30 s; its process group holds %q", inGroup(pgid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); len(inGroup(pgid)) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("processes dnsbench started still run 5 s after it was killed: %q", inGroup(pgid))
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

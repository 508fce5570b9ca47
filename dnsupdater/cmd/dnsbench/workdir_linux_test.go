package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/prober/benchenv/benchenvtest"
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
	run := benchenvtest.Start(t, "dnsbench", cmd)
	w.Close()
	first, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if want := "dnsbench: in the host's network namespace (-netns=false)\n"; err != nil || first != want {
		t.Fatalf("the report's first line: %q, %v; want %q", first, err, want)
	}
	err = run.Ends(t, within, "of its report's reader leaving")
	if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGPIPE) {
		t.Errorf("dnsbench: %v, want exit status %d, as a command SIGPIPE killed", err, 128+int(syscall.SIGPIPE))
	}
	benchenvtest.NoneMatch(t, filepath.Join(root, "dnsbench-*"))
	run.NoneLeft(t) // the servers dnsbench started are in its process group
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
	var out strings.Builder
	cmd.Stdout = &out
	run := benchenvtest.Start(t, "dnsbench", cmd)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if left, _ := filepath.Glob(filepath.Join(root, "dnsbench-*", "dnsperf-*")); len(left) > 0 {
			break // dnsperf runs
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsbench did not start dnsperf within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run.StopBy(t, syscall.SIGTERM, 60*time.Second)
	if want := "dnsbench: in the host's network namespace (-netns=false)\n\n"; out.String() != want {
		t.Errorf("the report of a run SIGTERM stopped:\n%s\nwant its first line alone, %q", out.String(), want)
	}
	benchenvtest.NoneMatch(t, filepath.Join(root, "dnsbench-*"))
}

// TestARunKilledLeavesNoServerOrDNSPerfRunning: a run the OOM killer ends (SIGKILL, which it
// cannot catch) takes its servers and dnsperf with it.
func TestARunKilledLeavesNoServerOrDNSPerfRunning(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\nexec sleep 60\n")
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-netns=false", "-only=detour", "-rounds=1", "-latency=false", "-duration=1s")
	cmd.Env = append(os.Environ(), runHelperEnv+"=1", "TMPDIR="+root)
	run := benchenvtest.Start(t, "dnsbench", cmd)
	run.WaitFor(t, "sleep 60", "dnsperf", 30*time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	run.NoneLeft(t)
}

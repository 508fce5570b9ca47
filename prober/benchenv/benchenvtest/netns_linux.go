package benchenvtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/detourdev/detour/prober/benchenv"
)

// NeedNetns skips the test where no network namespace can be made (not root).
func NeedNetns(t testing.TB) {
	t.Helper()
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
}

// PlayIsolate is the test binary's part, in TestMain, when a test runs it to play a benchmark
// that calls isolate first, as the program does: the run isolate starts again writes the network
// namespace it is in and its report's line (line(where)) to the file out, and ends with status 3;
// the first process ends with the run's status. An error of isolate is written to out, with
// status 100.
func PlayIsolate(out string, isolate func() (benchenv.Netns, error), line func(benchenv.Netns) string) int {
	where, err := isolate()
	switch {
	case err != nil:
		_ = os.WriteFile(out, []byte(err.Error()), 0o644)
		return 100
	case where.Done:
		return where.Status
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		ns = err.Error()
	}
	_ = os.WriteFile(out, []byte(ns+"\n"+line(where)), 0o644)
	return 3
}

// RunsInANamespaceOfItsOwn runs the test binary with env set to a file for PlayIsolate, holds
// the program to the run's status and the run to a network namespace other than the test's,
// and returns the report line the run wrote.
func RunsInANamespaceOfItsOwn(t testing.TB, name, env string) string {
	t.Helper()
	NeedNetns(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+out)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		b, _ := os.ReadFile(out)
		t.Fatalf("%s: %v (%q), want the run's status, 3", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, line, _ := strings.Cut(string(b), "\n")
	if !strings.HasPrefix(ns, "net:[") || ns == host {
		t.Errorf("the run is in %q, want a network namespace other than the host's, %s", ns, host)
	}
	return line
}

// Package benchenvtest holds what the tests of the benchmark programs (dnsbench, probebench,
// regionbench) share: a run of the program in a process group of its own, watched through
// /proc, stopped by a signal, and held to ending as a command that signal killed, leaving no
// process it started and no work directory.
package benchenvtest

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

	"github.com/detourdev/detour/prober/benchenv"
	"golang.org/x/sys/unix"
)

// Run is a benchmark program that a test started, in a process group of its own.
type Run struct {
	// Cmd is the program's command, started.
	Cmd *exec.Cmd
	// Name names the program in failures.
	Name string
	pgid int
}

// Start starts cmd, named name in failures, in a process group of its own, which is killed
// whole when the test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Run {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &Run{Cmd: cmd, Name: name, pgid: cmd.Process.Pid}
	t.Cleanup(func() { _ = syscall.Kill(-r.pgid, syscall.SIGKILL) })
	return r
}

// StartReported starts cmd as Start does, with its report's first line read from its standard
// output and held to say where the run is, as every benchmark's does ("NAME: in …"). The rest
// of the report is left unread.
func StartReported(t testing.TB, name string, cmd *exec.Cmd) *Run {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := Start(t, name, cmd)
	if first, err := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(first, name+": in ") {
		t.Fatalf("the report's first line: %q, %v; want it to start %q", first, err, name+": in ")
	}
	return r
}

// Group lists the command lines of the live processes (zombies left out) of the run's process
// group: the program and every process it started.
func (r *Run) Group() []string {
	ents, _ := os.ReadDir("/proc")
	var cmds []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// State, parent, process group.
		f, err := benchenv.StatFields(pid)
		if err != nil || len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(r.pgid) {
			continue
		}
		c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmds = append(cmds, string(bytes.ReplaceAll(c, []byte{0}, []byte{' '})))
	}
	return cmds
}

// WaitFor waits, up to within, until the command line of a process of the run's group holds
// s; what is waited for says what that process is, in the failure.
func (r *Run) WaitFor(t testing.TB, s, what string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(strings.Join(r.Group(), "\n"), s); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %s; its process group holds %q", r.Name, what, within, r.Group())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ends waits up to within for the program to end, after what it was waiting for (said in the
// failure), and returns what its Wait returned.
func (r *Run) Ends(t testing.TB, within time.Duration, after string) error {
	t.Helper()
	ended := make(chan error, 1)
	go func() { ended <- r.Cmd.Wait() }()
	select {
	case err := <-ended:
		return err
	case <-time.After(within):
		t.Fatalf("%s did not end within %s %s", r.Name, within, after)
		return nil
	}
}

// StopBy sends sig to the program and holds it to ending within the time given with the status
// of a command that sig killed, 128 + its number.
func (r *Run) StopBy(t testing.TB, sig syscall.Signal, within time.Duration) {
	t.Helper()
	if err := r.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	name := unix.SignalName(sig)
	err := r.Ends(t, within, "of "+name)
	if code := r.Cmd.ProcessState.ExitCode(); code != 128+int(sig) {
		t.Errorf("%s after %s: %v, want exit status %d, as a command %s killed", r.Name, name, err, 128+int(sig), name)
	}
}

// NoneLeft holds every process the program started to end within 5 s of it.
func (r *Run) NoneLeft(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(r.Group()) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("processes %s started still run 5 s after it ended: %q", r.Name, r.Group())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// NoneMatch holds the file name pattern to match nothing: what is left behind.
func NoneMatch(t testing.TB, pattern string) {
	t.Helper()
	if left, _ := filepath.Glob(pattern); len(left) != 0 {
		t.Errorf("work directories left behind: %v", left)
	}
}

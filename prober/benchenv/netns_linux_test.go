package benchenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv, when set, makes the test binary a benchmark program that calls Isolate first
// thing, as the benchmarks do; the run it starts again does what helperEnv says ("report",
// "wait", "killed") and writes what it sees to the file outEnv names.
const (
	helperEnv  = "BENCHENV_NETNS_HELPER"
	outEnv     = "BENCHENV_NETNS_OUT"
	helperName = "benchenvtest"
	// exitEnv, when set, makes the test binary call Exit with its value.
	exitEnv = "BENCHENV_EXIT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(removeEnv); dir != "" {
		stoppedWhileItsProcessesEnd(dir)
	}
	if code := os.Getenv(exitEnv); code != "" {
		n, _ := strconv.Atoi(code)
		Exit(n)
	}
	if do := os.Getenv(helperEnv); do != "" {
		Exit(helper(do)) // as the benchmarks' main does
	}
	os.Exit(m.Run())
}

func helper(do string) int {
	out := os.Getenv(outEnv)
	n, err := Isolate(helperName)
	switch {
	case err != nil:
		_ = os.WriteFile(out, []byte("error: "+err.Error()), 0o644)
		return 100
	case n.Done:
		return n.Status
	case !n.Own:
		_ = os.WriteFile(out, []byte("where "+n.String()), 0o644)
		return 4
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		ns = err.Error()
	}
	report := []string{"pid " + strconv.Itoa(os.Getpid()), "netns " + ns, "where " + n.String()}
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err != nil {
		report = append(report, "listen: "+err.Error())
	} else {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err != nil {
			report = append(report, "dial: "+err.Error())
		} else {
			report = append(report, "dial ok")
			c.Close()
		}
		l.Close()
	}
	// A new namespace may also hold tunnel devices a loaded module adds (tunl0, sit0), down.
	ifs, _ := net.Interfaces()
	var up []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 {
			up = append(up, i.Name)
		}
	}
	report = append(report, "up "+strings.Join(up, ","))
	switch do {
	case "killed":
		// As the kernel's OOM killer ends a run.
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "interrupted":
		// As Ctrl-C ends a run that does not catch it (probebench, regionbench).
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {}
	case "wait":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		_ = os.WriteFile(out, []byte(strings.Join(append(report, "waiting"), "\n")), 0o644)
		s := <-sigs
		_ = os.WriteFile(out, []byte(strings.Join(append(report, "got "+s.String()), "\n")), 0o644)
		return 7
	}
	_ = os.WriteFile(out, []byte(strings.Join(report, "\n")), 0o644)
	return 3
}

// canIsolate skips the test where this user cannot make a network namespace.
func canIsolate(t *testing.T) {
	t.Helper()
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
}

// startHelper starts the test binary as a benchmark program whose run does do, and returns it
// and the file its run writes to.
func startHelper(t *testing.T, do string) (*exec.Cmd, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+do, outEnv+"="+out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// waitFor polls file until it holds want, for 10 s, and returns its lines.
func waitFor(t *testing.T, file, want string) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), want) {
			return strings.Split(string(b), "\n")
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(file)
			t.Fatalf("the run did not write %q within 10 s; it wrote %q", want, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exitStatus(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.String()
	}
	return fmt.Sprint(err)
}

func TestTheRunIsInANamespaceOfItsOwnWithLoopbackAloneUpAndItsStatusIsPassedOn(t *testing.T) {
	canIsolate(t)
	cmd, out := startHelper(t, "report")
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("the program's status: %s, want the run's own, exit status 3", exitStatus(err))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(string(b), "\n")
	want := []string{"netns net:[", "where " + Netns{Own: true}.String(), "dial ok", "up lo"}
	if len(got) != 5 || !strings.HasPrefix(got[1], want[0]) || got[2] != want[1] || got[3] != want[2] || got[4] != want[3] {
		t.Fatalf("the run saw %q, want its pid, then %q", got, want)
	}
	if got[1] == "netns "+host {
		t.Errorf("the run is in the host's network namespace (%s)", host)
	}
}

// TestASignalToTheProgramReachesTheRun: the run stops its servers and removes its files on
// SIGTERM, so the signal must not stop at the process that started it.
func TestASignalToTheProgramReachesTheRun(t *testing.T) {
	canIsolate(t)
	cmd, out := startHelper(t, "wait")
	waitFor(t, out, "waiting")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	select {
	case err := <-ended:
		if cmd.ProcessState.ExitCode() != 7 {
			t.Fatalf("the program after SIGTERM: %s, want the status of a run that caught it, exit status 7", exitStatus(err))
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill() // the run ends with it (Pdeathsig)
		t.Fatal("the program did not end within 10 s of SIGTERM: the run never got it")
	}
}

// TestAProgramStartedWithCtrlCIgnoredKeepsIgnoringIt: a shell starts a background job with
// SIGINT ignored, so that Ctrl-C, meant for the job in the foreground, leaves it running.
func TestAProgramStartedWithCtrlCIgnoredKeepsIgnoringIt(t *testing.T) {
	canIsolate(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command("sh", "-c", "trap '' INT; exec \"$0\" -test.run=^$", os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=wait", outEnv+"="+out)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	waitFor(t, out, "waiting")
	// As Ctrl-C reaches every process of the terminal's foreground group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Fatalf("the program after SIGINT, then SIGTERM: %s, want the status of a run that ignored SIGINT and caught SIGTERM, exit status 7", exitStatus(err))
	}
	waitFor(t, out, "got terminated")
}

// TestARunOutlivesNotTheProgramThatStartedIt: a program killed (SIGKILL, which it cannot pass
// on) leaves no run behind holding its servers: the run gets SIGTERM.
func TestARunOutlivesNotTheProgramThatStartedIt(t *testing.T) {
	canIsolate(t)
	cmd, out := startHelper(t, "wait")
	lines := waitFor(t, out, "waiting")
	if pid, err := strconv.Atoi(strings.TrimPrefix(lines[0], "pid ")); err == nil {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, out, "got terminated")
}

// TestTheProgramExitsAsARunKilledByASignal: a run that a signal ended (the OOM killer's
// SIGKILL, SIGPIPE when the reader of its report went away) ends the program with the status a
// shell gives a command killed by that signal, 128 + its number.
func TestTheProgramExitsAsARunKilledByASignal(t *testing.T) {
	canIsolate(t)
	cmd, _ := startHelper(t, "killed")
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 128+int(syscall.SIGKILL) {
		t.Fatalf("the program after its run was killed by SIGKILL: %s, want exit status %d", exitStatus(err), 128+int(syscall.SIGKILL))
	}
}

// TestTheProgramDiesOfCtrlCAsItsRunDid: a shell running the program in a loop or a script stops
// when Ctrl-C killed it, and goes on when it merely exited 130 (it handled Ctrl-C); the program
// must end as its run did, not exit 130.
func TestTheProgramDiesOfCtrlCAsItsRunDid(t *testing.T) {
	canIsolate(t)
	if b, err := os.ReadFile("/proc/self/status"); err == nil && sigIgnored(string(b), syscall.SIGINT) {
		t.Skip("SIGINT is ignored here (a background job): the run cannot die of it")
	}
	cmd, _ := startHelper(t, "interrupted")
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("the program after Ctrl-C killed its run: %s, want it killed by SIGINT too", exitStatus(err))
	}
}

// TestExitWithCtrlCsStatusWhereCtrlCIsIgnoredExits: a program started with SIGINT ignored
// (a shell's background job) cannot die of it, and exits 130.
func TestExitWithCtrlCsStatusWhereCtrlCIsIgnoredExits(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' INT; exec \"$0\" -test.run=^$", os.Args[0])
	cmd.Env = append(os.Environ(), exitEnv+"=130")
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("Exit(130) with SIGINT ignored: %s, want exit status 130", exitStatus(err))
	}
}

// sigIgnored reads the SigIgn mask of a /proc/PID/status for sig.
func sigIgnored(status string, sig syscall.Signal) bool {
	for _, line := range strings.Split(status, "\n") {
		if mask, ok := strings.CutPrefix(line, "SigIgn:\t"); ok {
			m, err := strconv.ParseUint(mask, 16, 64)
			return err == nil && m&(1<<(sig-1)) != 0
		}
	}
	return false
}

// TestARunThatInheritsTheMarkButNotANamespaceIsRefused: a mark left in the environment
// (exported by hand, or by a program that started this one some other way) must not make a run
// in the host's namespace report a namespace of its own.
func TestARunThatInheritsTheMarkButNotANamespaceIsRefused(t *testing.T) {
	here, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no /proc/self/ns/net here: %v", err)
	}
	t.Setenv("BENCHENVTEST_NETNS", here)
	n, err := Isolate(helperName)
	if err == nil || !strings.Contains(err.Error(), "BENCHENVTEST_NETNS="+here+" names this network namespace: the run is not in one of its own") {
		t.Fatalf("Isolate in the namespace the mark names: %+v, %v; want a refusal", n, err)
	}
}

// TestAMarkThatNamesAnotherNamespaceDoesNotMakeTheHostsOneItsOwn: a mark naming some other
// namespace (a stale one, a typo, one from another machine) in a namespace whose interfaces are
// up is no namespace of Isolate's: regionbench would put its firewall rule in the host's.
func TestAMarkThatNamesAnotherNamespaceDoesNotMakeTheHostsOneItsOwn(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	up := ""
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 {
			up = i.Name
			break
		}
	}
	if up == "" {
		t.Skip("no interface is up here: this namespace is as one of Isolate's")
	}
	t.Setenv("BENCHENVTEST_NETNS", "net:[1]")
	n, err := Isolate(helperName)
	if want := "BENCHENVTEST_NETNS=net:[1] is set, but interface " + up + " is up here: the run is not in a network namespace of its own (unset BENCHENVTEST_NETNS)"; err == nil || err.Error() != want {
		t.Fatalf("Isolate in a namespace with %s up: %+v, %v; want the refusal %q", up, n, err, want)
	}
}

// TestWithoutRootTheRunStaysInTheHostsNamespaceAndSaysWhy runs the program as nobody, who
// may not make a network namespace.
func TestWithoutRootTheRunStaysInTheHostsNamespaceAndSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the program as another user")
	}
	// A copy of the test binary, and a file for its report, that nobody may reach.
	dir, err := os.MkdirTemp("", "benchenv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "prog")
	if err := copyFile(os.Args[0], prog); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command(prog, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=report", outEnv+"="+out)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 4 {
		b, _ := os.ReadFile(out)
		t.Fatalf("the program as nobody: %s (%q), want a run here, exit status 4", exitStatus(err), b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "where the host's network namespace (no namespace of its own: fork/exec " + prog + ": operation not permitted)"
	if string(b) != want {
		t.Errorf("the program as nobody says %q, want %q", b, want)
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

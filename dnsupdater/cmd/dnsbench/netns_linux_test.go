package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsHelperEnv, when set, makes the test binary play a part of -netns: "parent" starts the
// binary again through inOwnNetns, as dnsbench starts itself; "child" is that run, and writes
// what it sees of its network to the file netnsOutEnv names.
const (
	netnsHelperEnv = "DNSBENCH_NETNS_HELPER"
	netnsOutEnv    = "DNSBENCH_NETNS_OUT"
)

func netnsHelper(role string) int {
	out := os.Getenv(netnsOutEnv)
	if role == "parent" {
		os.Setenv(netnsHelperEnv, "child")
		code, err := inOwnNetns(nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 100
		}
		return code
	}
	// The child: where dnsbench brings loopback up, then waits for a signal when asked to.
	var report []string
	if os.Getenv(netnsEnv) == "" {
		report = append(report, "no "+netnsEnv)
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		ns = err.Error()
	}
	report = append(report, "netns "+ns)
	if err := enterOwnNetns(os.Getenv(netnsEnv)); err != nil {
		report = append(report, "enter: "+err.Error())
	}
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
	if os.Getenv("DNSBENCH_NETNS_KILLED") != "" {
		// As the kernel's OOM killer ends a run.
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	if os.Getenv("DNSBENCH_NETNS_WAIT") != "" {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		report = append(report, "waiting")
		_ = os.WriteFile(out, []byte(strings.Join(report, "\n")), 0o644)
		<-sigs
		return 7
	}
	_ = os.WriteFile(out, []byte(strings.Join(report, "\n")), 0o644)
	return 3
}

// startNetnsParent starts the test binary as a dnsbench that runs itself again in a network
// namespace of its own, or skips the test where this user cannot make one.
func startNetnsParent(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	probe := exec.Command("true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := probe.Run(); err != nil {
		t.Skipf("a new network namespace cannot be made here (%v): run as root", err)
	}
	out := filepath.Join(t.TempDir(), "child")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), netnsHelperEnv+"=parent", netnsOutEnv+"="+out)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// TestTheRunInItsOwnNetworkNamespaceHasLoopbackOnlyAndItsStatusIsPassedOn holds -netns to what
// the report says: the servers and dnsperf run in another network namespace than the host's,
// whose only interface is a loopback that is up, and dnsbench exits as that run did.
func TestTheRunInItsOwnNetworkNamespaceHasLoopbackOnlyAndItsStatusIsPassedOn(t *testing.T) {
	cmd, out := startNetnsParent(t)
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("dnsbench's status: %v, want the run's own, 3", err)
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
	if len(got) != 3 || !strings.HasPrefix(got[0], "netns net:[") || got[1] != "dial ok" || got[2] != "up lo" {
		t.Fatalf("the run in its own namespace saw %q, want its namespace, a dial on loopback and loopback alone up", got)
	}
	if got[0] == "netns "+host {
		t.Errorf("the run is in the host's network namespace (%s)", host)
	}
}

// TestASignalToDnsbenchReachesTheRunInItsOwnNamespace: the run stops its servers and switches
// the kernel's tracing off on SIGTERM, so the signal must not stop at the dnsbench that started it.
func TestASignalToDnsbenchReachesTheRunInItsOwnNamespace(t *testing.T) {
	cmd, out := startNetnsParent(t, "DNSBENCH_NETNS_WAIT=1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(out); err == nil && strings.Contains(string(b), "waiting") {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the run in its own namespace did not start within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	var err error
	select {
	case err = <-ended:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill() // the run, its child, ends with it (Pdeathsig)
		t.Fatal("dnsbench did not end within 10 s of SIGTERM: the run in its own namespace never got it")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("dnsbench after SIGTERM: %v, want the status of a run that caught it, 7", err)
	}
}

// TestDnsbenchExitsAsARunKilledByASignal: a run that a signal ended (the OOM killer's SIGKILL,
// SIGPIPE when the reader of its report went away) ends dnsbench with the status a shell gives
// a command killed by that signal, 128 + its number, as a dnsbench that ran alone would have.
func TestDnsbenchExitsAsARunKilledByASignal(t *testing.T) {
	cmd, _ := startNetnsParent(t, "DNSBENCH_NETNS_KILLED=1")
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 128+int(syscall.SIGKILL) {
		t.Fatalf("dnsbench after its run was killed by SIGKILL: %v, want exit status %d", err, 128+int(syscall.SIGKILL))
	}
}

// TestARunThatInheritsTheMarkButNotANamespaceIsRefused: a DNSBENCH_NETNS left in the
// environment (exported by hand, or by a dnsbench that started this one some other way) must not
// make a run in the host's namespace report a namespace of its own.
func TestARunThatInheritsTheMarkButNotANamespaceIsRefused(t *testing.T) {
	here, err := netnsOf()
	if err != nil {
		t.Skipf("no /proc/self/ns/net here: %v", err)
	}
	err = enterOwnNetns(here)
	if err == nil || !strings.Contains(err.Error(), "not in one of its own") {
		t.Fatalf("enterOwnNetns in the namespace the mark names: %v, want a refusal", err)
	}
}

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/detourdev/detour/prober/benchenv"
)

// netnsEnv marks a dnsbench that inOwnNetns started in a network namespace of its own, so that
// it measures rather than starting itself again. Its value is the namespace it left, which
// enterOwnNetns checks it is no longer in.
const netnsEnv = "DNSBENCH_NETNS"

// ownNetnsNote is the report's network line for a run in a namespace of its own.
const ownNetnsNote = "network: a namespace of its own, only its loopback up (no firewall rule or connection tracking of the host's on the path)"

// netnsOf names the network namespace this process runs in.
func netnsOf() (string, error) { return os.Readlink("/proc/self/ns/net") }

// inOwnNetns runs this program again, with the same arguments, in a new network namespace with
// only its loopback interface, and returns its exit status. Every server and dnsperf then send
// and receive through a loopback that no firewall rule of the host's sees: a host running
// Docker has netfilter tables and connection tracking on its own loopback, which every datagram
// of the benchmark crossed twice (into the server, back to dnsperf), at a cost that is the same
// for every server and so shrinks every ratio towards 1; an authoritative server is usually
// exempt from connection tracking (a NOTRACK rule) for that reason.
//
// It fails, having started nothing, where a namespace cannot be made (not root): the run then
// stays in the host's namespace. Once the run started, it returns its status and no error; a
// run killed by a signal returns 128 plus the signal's number.
func inOwnNetns(args []string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find this program: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	host, err := netnsOf()
	if err != nil {
		return 0, fmt.Errorf("read this network namespace: %w", err)
	}
	cmd.Env = append(os.Environ(), netnsEnv+"="+host)
	// Pdeathsig is sent when the thread that started the child ends, not the process: this
	// goroutine keeps its thread until the child has ended.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGTERM}
	// Caught before the child starts, so that a signal meant for the run is passed on, not
	// lost: the child switches the kernel's tracing off (-stages) and stops its servers.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		signal.Stop(sigs)
		return 0, err
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	close(sigs)
	if err == nil {
		return 0, nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		// A run a signal ended (the OOM killer, SIGPIPE from a closed report) ends this one
		// with the status a shell gives a command killed by that signal, as a run here would
		// have had.
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "dnsbench: the run in its own network namespace: %v\n", err)
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	fmt.Fprintf(os.Stderr, "dnsbench: the run in its own network namespace: %v\n", err)
	return 1, nil
}

// enterOwnNetns prepares the namespace inOwnNetns started this run in: it checks that the run
// left the namespace named left (an environment that merely carries netnsEnv is refused), and
// brings its loopback up, which a new namespace starts with down.
func enterOwnNetns(left string) error {
	here, err := netnsOf()
	if err != nil {
		return fmt.Errorf("read this network namespace: %w", err)
	}
	if here == left {
		return fmt.Errorf("%s=%s names this network namespace: the run is not in one of its own (unset %s)", netnsEnv, left, netnsEnv)
	}
	return benchenv.LoopbackUp()
}

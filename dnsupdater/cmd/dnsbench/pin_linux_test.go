package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pinHelperEnv, when set, makes the test binary stand for a server: a Go process, with
// several threads, that starts a child process (as NSD forks its workers) and runs until its
// standard input closes.
const pinHelperEnv = "DNSBENCH_PIN_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(runHelperEnv) != "" {
		os.Exit(run()) // dnsbench itself, and its serve-detour
	}
	if out := os.Getenv(netnsHelperEnv); out != "" {
		os.Exit(netnsHelper(out))
	}
	if os.Getenv(pinHelperEnv) != "" {
		child := exec.Command("sleep", "60")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = child.Process.Kill()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestConfineBindsEveryThreadOfTheServersTreeAndAThreadThatLeavesIsFound holds -pin to what it
// says: every thread of the server and of the processes it started runs on the server CPU only,
// and a thread that sets its own affinity afterwards, as Knot's UDP workers do, is reported.
func TestConfineBindsEveryThreadOfTheServersTreeAndAThreadThatLeavesIsFound(t *testing.T) {
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	if !mine.IsSet(serverCPU) || !mine.IsSet(clientCPU) {
		t.Skipf("needs CPUs %d and %d (this test may run on %d CPUs)", serverCPU, clientCPU, mine.Count())
	}
	if err := canFindChildren(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pinHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = unix.Kill(-pid, unix.SIGKILL) // the helper and its child, even if the tree was not found
		_ = cmd.Wait()
	})
	var procs, threads []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		procs, threads = processTree(pid)
		if len(procs) == 2 && len(threads) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper has %d processes and %d threads after 10s, want 2 processes (itself and its child) and 3 threads or more", len(procs), len(threads))
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := strays(pid)
	for _, tid := range threads {
		var set unix.CPUSet
		if !slices.Contains(got, tid) && !errors.Is(unix.SchedGetaffinity(tid, &set), unix.ESRCH) {
			// A thread that ended since the tree was read is no stray (seen once in CI).
			t.Fatalf("before confine: strays %v, want every thread of %v still running (they may run on every CPU)", got, threads)
		}
	}

	if err := confine(context.Background(), pid); err != nil {
		t.Fatal(err)
	}
	for _, tid := range threads {
		var set unix.CPUSet
		err := unix.SchedGetaffinity(tid, &set)
		if errors.Is(err, unix.ESRCH) {
			continue // the thread ended since the tree was read (seen once in CI): it runs nowhere
		}
		if err != nil {
			t.Fatal(err)
		}
		if set.Count() != 1 || !set.IsSet(serverCPU) {
			t.Errorf("%s after confine, want CPU %d only", describe(tid), serverCPU)
		}
	}
	if got := strays(pid); len(got) != 0 {
		t.Fatalf("after confine: strays %v, want none", got)
	}

	// One of the server's threads other than its first binds itself to the client's CPU, as a
	// Knot worker binds itself to CPU i.
	_, threads = processTree(pid)
	worker := threads[slices.IndexFunc(threads, func(tid int) bool { return tid != pid })]
	var away unix.CPUSet
	away.Set(clientCPU)
	if err := unix.SchedSetaffinity(worker, &away); err != nil {
		t.Fatal(err)
	}
	if got := strays(pid); !slices.Equal(got, []int{worker}) {
		t.Fatalf("after thread %d moved to CPU %d: strays %v, want [%d]", worker, clientCPU, got, worker)
	}
	was := pinned
	pinned = true
	t.Cleanup(func() { pinned = was })
	err = strayed(pid)
	if want := fmt.Sprintf("thread %d (", worker); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("CPUs %d)", clientCPU)) {
		t.Fatalf("strayed: %v, want an error naming %s… and CPUs %d", err, want, clientCPU)
	}
}

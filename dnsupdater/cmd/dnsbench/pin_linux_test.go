package main

import (
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConfineBindsEveryThreadOfTheServersTreeAndAThreadThatLeavesIsFound holds -pin to what it
// says: every thread of the server and of the processes it started runs on the server CPU only,
// and a thread that sets its own affinity afterwards, as Knot's UDP workers do, is reported.
func TestConfineBindsEveryThreadOfTheServersTreeAndAThreadThatLeavesIsFound(t *testing.T) {
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	server, _ := strconv.Atoi(serverCPU)
	other, _ := strconv.Atoi(clientCPU)
	if !mine.IsSet(server) || !mine.IsSet(other) {
		t.Skipf("needs CPUs %s and %s (this test may run on %d CPUs)", serverCPU, clientCPU, mine.Count())
	}
	// A shell with two children stands for a server that forks its workers (NSD).
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		procs, _ := processTree(cmd.Process.Pid)
		for _, p := range procs {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		_ = cmd.Wait()
	})
	var procs, threads []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if procs, threads = processTree(cmd.Process.Pid); len(procs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell has %d processes after 10s, want 3 (itself and two children)", len(procs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := strays(cmd.Process.Pid); len(got) != len(threads) {
		t.Fatalf("before confine: strays %v, want every thread of %v (they may run on every CPU)", got, threads)
	}

	if err := confine(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, tid := range threads {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			t.Fatal(err)
		}
		if set.Count() != 1 || !set.IsSet(server) {
			t.Errorf("thread %d may run on %d CPUs after confine, want CPU %s only", tid, set.Count(), serverCPU)
		}
	}
	if got := strays(cmd.Process.Pid); len(got) != 0 {
		t.Fatalf("after confine: strays %v, want none", got)
	}

	// A child binds itself to the client's CPU, as a Knot worker binds itself to CPU i.
	var away unix.CPUSet
	away.Set(other)
	if err := unix.SchedSetaffinity(procs[2], &away); err != nil {
		t.Fatal(err)
	}
	if got := strays(cmd.Process.Pid); !slices.Equal(got, []int{procs[2]}) {
		t.Fatalf("after a child moved to CPU %s: strays %v, want [%d]", clientCPU, got, procs[2])
	}
}

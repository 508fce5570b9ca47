package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// How long confine watches the threads it bound before it trusts them to stay, and how long
// it keeps binding threads that leave.
const (
	settleFor     = 200 * time.Millisecond
	confineWithin = 5 * time.Second
)

// confine binds every thread of the process pid and of its descendants to serverCPU. taskset
// sets a server's affinity when it starts, but a server may set its threads' own afterwards:
// Knot binds its UDP worker i to CPU i modulo the CPUs online, whatever its mask, as each
// worker starts, so under taskset alone its second worker ran on dnsperf's CPU. A thread that
// leaves after it was bound (a worker that started late) is bound again: confine returns once
// every thread stayed on serverCPU for settleFor, and an error naming the threads that still
// leave after confineWithin. Threads that end meanwhile are skipped.
func confine(ctx context.Context, pid int) error {
	var set unix.CPUSet
	set.Set(serverCPU)
	deadline := time.Now().Add(confineWithin)
	for {
		for _, tid := range threadsOf(pid) {
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("-pin: bind %s to CPU %d: %w", describe(tid), serverCPU, err)
			}
		}
		calm := time.Now().Add(settleFor)
		var left []int
		for left = strays(pid); len(left) == 0 && time.Now().Before(calm); left = strays(pid) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("-pin: %s keep leaving CPU %d", describeAll(left), serverCPU)
		}
	}
}

// strayed reports, with -pin, the threads of pid's process tree that are no longer bound to
// serverCPU at the end of a run, which makes the run's figures those of another placement.
func strayed(pid int) error {
	if !pinned {
		return nil
	}
	if left := strays(pid); len(left) > 0 {
		return fmt.Errorf("-pin: by the end of the run %s had left CPU %d", describeAll(left), serverCPU)
	}
	return nil
}

// strays returns the threads of pid's process tree that may run on a CPU other than serverCPU,
// or whose affinity cannot be read; threads that ended are not counted.
func strays(pid int) []int {
	var out []int
	for _, tid := range threadsOf(pid) {
		var set unix.CPUSet
		err := unix.SchedGetaffinity(tid, &set)
		switch {
		case errors.Is(err, unix.ESRCH):
		case err != nil, set.Count() != 1, !set.IsSet(serverCPU):
			out = append(out, tid)
		}
	}
	return out
}

// threadsOf returns the threads of the process pid and of its live descendants.
func threadsOf(pid int) []int {
	_, threads := processTree(pid)
	return threads
}

// describe names a thread for an error: its id, its command and the CPUs it may run on.
func describe(tid int) string {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", tid))
	var set unix.CPUSet
	cpus := "unknown CPUs"
	if unix.SchedGetaffinity(tid, &set) == nil {
		var on []string
		for c := range 1024 {
			if set.IsSet(c) {
				on = append(on, strconv.Itoa(c))
			}
		}
		cpus = "CPUs " + strings.Join(on, ",")
	}
	return fmt.Sprintf("thread %d (%s, %s)", tid, strings.TrimSpace(string(comm)), cpus)
}

// describeAll names several threads.
func describeAll(tids []int) string {
	var ds []string
	for _, tid := range tids {
		ds = append(ds, describe(tid))
	}
	return strings.Join(ds, ", ")
}

// canFindChildren checks that this kernel lists a thread's children
// (/proc/PID/task/TID/children, CONFIG_PROC_CHILDREN), through which -pin finds the processes
// a server started.
func canFindChildren() error {
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d/children", unix.Gettid())); err != nil {
		return fmt.Errorf("-pin: this kernel does not list a process's children (/proc/PID/task/TID/children, CONFIG_PROC_CHILDREN), which -pin needs to find a server's processes: %w", err)
	}
	return nil
}

package main

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// confine binds every thread of the process pid and of its descendants to the server CPU.
// taskset sets a server's affinity when it starts, but a server may set its threads' own
// afterwards: Knot binds UDP worker i to CPU i modulo the CPUs online, whatever its mask, so
// under taskset alone its second worker ran on dnsperf's CPU.
func confine(pid int) error {
	cpu, err := strconv.Atoi(serverCPU)
	if err != nil {
		return err
	}
	var set unix.CPUSet
	set.Set(cpu)
	_, threads := processTree(pid)
	for _, tid := range threads {
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("-pin: bind thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}

// strays returns the threads of pid's process tree that may run on a CPU other than the
// server CPU.
func strays(pid int) []int {
	cpu, _ := strconv.Atoi(serverCPU)
	var out []int
	_, threads := processTree(pid)
	for _, tid := range threads {
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) != nil {
			continue // the thread ended
		}
		if set.Count() != 1 || !set.IsSet(cpu) {
			out = append(out, tid)
		}
	}
	return out
}

package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// treeCPU returns the CPU time (user and system) used so far by the process pid and every
// live descendant, read from /proc. Servers such as NSD fork their workers, so the process's
// own times are not enough.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	procs, _ := processTree(pid)
	for _, p := range procs {
		total += processCPU(p)
	}
	return total
}

// processTree returns the process pid and its live descendants, and the threads of them all,
// read from /proc.
func processTree(pid int) (procs, threads []int) {
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		procs = append(procs, p)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				threads = append(threads, tid)
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					walk(c)
				}
			}
		}
	}
	walk(pid)
	return procs, threads
}

// processCPU reads utime and stime of one process.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, may hold spaces: count fields after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// hostSteal returns the time this machine's CPUs were ready to run but held by the hypervisor,
// summed over the CPUs (steal, in /proc/stat); ok is false where the kernel does not say.
func hostSteal() (steal time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	return parseSteal(b)
}

// parseSteal reads steal from /proc/stat's first line, "cpu  user nice system idle iowait irq
// softirq steal ...", in clock ticks.
func parseSteal(b []byte) (time.Duration, bool) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	n, err := strconv.ParseUint(f[8], 10, 64)
	if err != nil || n > math.MaxInt64/uint64(clockTick) {
		return 0, false
	}
	return time.Duration(n) * clockTick, true
}

// idleNote says how this machine's idle CPUs wait, read from sysfs under root ("/" on a real
// machine): the cpuidle driver and, for the haltpoll driver of a virtual machine, how long an
// idle vCPU polls before it halts to the host. Waking a halted vCPU is a trip through the host,
// which adds to every server's tail at a low load, so the latency report names it.
func idleNote(root string) string {
	read := func(path string) string {
		b, err := os.ReadFile(root + path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	switch driver := read("sys/devices/system/cpu/cpuidle/current_driver"); driver {
	case "", "none":
		return "idle CPUs: no cpuidle driver"
	case "haltpoll":
		ns := read("sys/module/haltpoll/parameters/guest_halt_poll_ns")
		if ns == "0" {
			return "idle CPUs: cpuidle haltpoll, guest_halt_poll_ns 0 (an idle vCPU halts to the host at once)"
		}
		return "idle CPUs: cpuidle haltpoll, guest_halt_poll_ns " + ns
	default:
		return "idle CPUs: cpuidle " + driver
	}
}

// ownCPU returns the CPU time this program used so far: the JetStream the Detour server
// follows runs in it.
func ownCPU() time.Duration { return processCPU(os.Getpid()) }

package benchenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux platform Go
// supports.
const clockTicks = 100

// CPUTime returns the user+system CPU time a process used so far.
func CPUTime(pid int) (time.Duration, error) {
	user, system, err := CPUTimes(pid)
	return user + system, err
}

// CPUTimes returns the CPU time a process used so far in user space and in the kernel.
func CPUTimes(pid int) (user, system time.Duration, err error) {
	f, err := StatFields(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("read cpu time of %d: %w", pid, err)
	}
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	// utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// StatFields returns the fields of /proc/PID/stat that follow the command name (which is in
// parentheses and may hold anything, spaces and parentheses included): the state first, then
// the parent's pid, the process group, and so on (field 3 of proc(5) onwards).
func StatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// PeakRSS returns a process's peak resident memory (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read memory of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read memory of %d: no VmHWM", pid)
}

// RunQueueWait returns how long the threads a process has now spent runnable but waiting for a
// CPU, summed (the second field of each thread's schedstat): on a machine with more runnable
// threads than cores, the time its work was ready and did not run.
func RunQueueWait(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("read run-queue wait of %d: %w", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("read run-queue wait of %d: malformed schedstat %q", pid, b)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read run-queue wait of %d: %w", pid, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

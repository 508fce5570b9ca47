package dnsupdater

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// schedSlice reads the slice the kernel shows for a thread (or process) in its sched file.
func schedSlice(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "se.slice" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s shows no se.slice", path)
	return ""
}

// skipUnlessSliceable skips a test where this process's threads cannot be given a slice: run
// under a real-time, deadline or idle policy (chrt), or where sched_setattr is refused (a
// seccomp profile, gVisor).
func skipUnlessSliceable(t *testing.T, err error) {
	t.Helper()
	if a, gerr := unix.SchedGetAttr(0, 0); gerr == nil && a.Policy != unix.SCHED_NORMAL && a.Policy != unix.SCHED_BATCH {
		t.Skipf("the test runs under scheduling policy %d, whose threads requestSlice leaves alone", a.Policy)
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("the kernel refuses sched_setattr here: %v", err)
	}
}

// requestOrSkip asks for a slice of d, skips the test where the kernel cannot give one, and
// returns how many threads have it and the process's threads.
func requestOrSkip(t *testing.T, d time.Duration) (threads int, tids []int) {
	t.Helper()
	threads, ok, err := requestSlice(d)
	skipUnlessSliceable(t, err)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("this kernel keeps its own slice for normal threads (Linux 6.12 or later keeps a requested one)")
	}
	tids, err = taskIDs()
	if err != nil {
		t.Fatal(err)
	}
	return threads, tids
}

func TestEveryThreadAndEveryChildGetsTheRequestedSliceAndZeroGivesTheKernelsBack(t *testing.T) {
	t.Cleanup(func() { _, _, _ = requestSlice(0) })
	threads, tids := requestOrSkip(t, 300*time.Microsecond)
	if threads < len(tids) {
		t.Errorf("requestSlice set %d threads, the process has %d", threads, len(tids))
	}
	for _, tid := range tids {
		if got := schedSlice(t, filepath.Join("/proc/self/task", strconv.Itoa(tid), "sched")); got != "300000" {
			t.Errorf("thread %d: se.slice %s, want 300000", tid, got)
		}
	}
	// A thread or process started later inherits the slice of the thread that starts it.
	out, err := exec.Command("cat", "/proc/self/sched").Output()
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(t.TempDir(), "sched")
	if err := os.WriteFile(child, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := schedSlice(t, child); got != "300000" {
		t.Errorf("a child started after the request: se.slice %s, want 300000", got)
	}

	if _, _, err := requestSlice(0); err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if got := schedSlice(t, filepath.Join("/proc/self/task", strconv.Itoa(tid), "sched")); got == "300000" {
			t.Errorf("thread %d kept the 300 µs slice after a request for the kernel's own", tid)
		}
	}
}

func TestAThreadUnderTheIdlePolicyIsLeftAsItIsAndNotCounted(t *testing.T) {
	// A thread under SCHED_IDLE cannot leave it without privilege, nor can Go end the main
	// thread: the test runs in a child process of its own, which takes the idle thread with it.
	if os.Getenv("DETOUR_SLICE_IDLE_CHILD") != "1" {
		skipUnlessSliceable(t, nil)
		cmd := exec.Command(os.Args[0], "-test.run=^TestAThreadUnderTheIdlePolicyIsLeftAsItIsAndNotCounted$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "DETOUR_SLICE_IDLE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the child: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "--- SKIP") {
			t.Skipf("the child skipped:\n%s", out)
		}
		return
	}
	idle := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked, never returns: the thread stays idle
		err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
		if err != nil {
			idle <- -1
		} else {
			idle <- unix.Gettid()
		}
		select {}
	}()
	tid := <-idle
	if tid < 0 {
		t.Skip("this thread cannot be put under SCHED_IDLE")
	}
	before, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	threads, tids := requestOrSkip(t, 300*time.Microsecond)
	if threads >= len(tids) {
		t.Errorf("requestSlice counted %d threads of %d, the idle one among them", threads, len(tids))
	}
	after, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if after.Policy != unix.SCHED_IDLE || after.Runtime != before.Runtime {
		t.Errorf("the idle thread: policy %d, slice %d; want it left as it was (policy %d, slice %d)", after.Policy, after.Runtime, before.Policy, before.Runtime)
	}
}

package dnsupdater

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

func TestEveryThreadAndEveryChildGetsTheRequestedSliceAndZeroGivesTheKernelsBack(t *testing.T) {
	threads, ok, err := requestSlice(300 * time.Microsecond)
	t.Cleanup(func() { _, _, _ = requestSlice(0) })
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("this kernel keeps its own slice for normal threads (Linux 6.12 or later keeps a requested one)")
	}
	tids, err := taskIDs()
	if err != nil {
		t.Fatal(err)
	}
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

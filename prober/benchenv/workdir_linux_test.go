package benchenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// removeEnv, when set, makes the test binary a benchmark whose work directory it names: it
// calls RemoveOnSignal, starts a process that takes a second to end on SIGTERM (and then writes
// the file DIR.ended, beside the work directory) and that says it is ready in the file "ready"
// there once its trap is set, and exits 1 as soon as that process ends, as a run that sees one
// of its servers end does. The process writes the file itself: a SIGTERM between its start and
// its trap would end it at once, and the test would wait for nothing.
const removeEnv = "BENCHENV_REMOVE_DIR"

func stoppedWhileItsProcessesEnd(dir string) {
	RemoveOnSignal(dir)
	slow := exec.Command("sh", "-c", "trap 'sleep 1; : > \"$0\"; exit 0' TERM; : > \"$1\"; while :; do sleep 0.1; done",
		dir+".ended", filepath.Join(dir, "ready"))
	if err := slow.Start(); err != nil {
		os.Exit(100)
	}
	_ = slow.Wait()
	Exit(1)
}

// TestAStopUnderwayEndsTheProgramHoweverItsRunEnds: on SIGTERM, the run's own code may see its
// processes end and exit before RemoveOnSignal has removed the work directory; the program
// still ends by the signal, without the directory, and only once the process it started has
// ended as SIGTERM asked it to.
func TestAStopUnderwayEndsTheProgramHoweverItsRunEnds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), removeEnv+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the program was not ready within 10 s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("the program after SIGTERM: %s, want it ended by SIGTERM", exitStatus(err))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the work directory after SIGTERM: %v, want it removed", err)
	}
	if _, err := os.Stat(dir + ".ended"); err != nil {
		t.Errorf("the process the program started, when the program ended: %v, want it ended after SIGTERM (passed on to it)", err)
	}
}

package benchenv

import (
	"os"
	"os/exec"
	"testing"
)

func TestTheRunQueueWaitOfAProcessIsReadAndOfAnEndedOneIsAnError(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc here")
	}
	if d, err := RunQueueWait(os.Getpid()); err != nil || d < 0 {
		t.Errorf("RunQueueWait(self) = %s, %v; want a duration of at least 0", d, err)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	if _, err := RunQueueWait(cmd.Process.Pid); err == nil {
		t.Error("RunQueueWait of a process that ended and was reaped: no error")
	}
}

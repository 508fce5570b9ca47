package benchenv

import (
	"os/exec"
	"syscall"
)

// DiesWithThis makes the process cmd starts get SIGKILL when this one ends (strictly, when the
// thread that started it ends: Pdeathsig), so that a benchmark that is killed leaves none of
// its servers behind.
func DiesWithThis(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

package benchenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DiesWithThis makes the process cmd starts get SIGKILL when this one ends (strictly, when the
// thread that started it ends: Pdeathsig), so that a benchmark that is killed leaves none of
// its servers behind.
func DiesWithThis(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// stopChildren passes sig to the processes this one started and gives them 5 s to end, as an
// operator stops a server, then kills those left and waits 5 s more for them to end.
func stopChildren(sig syscall.Signal) {
	for _, s := range []syscall.Signal{sig, syscall.SIGKILL} {
		for _, pid := range children() {
			_ = syscall.Kill(pid, s)
		}
		for deadline := time.Now().Add(5 * time.Second); len(children()) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// children lists the processes this one started that have not ended (zombies are ended), from
// the children files of its threads.
func children() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "children"))
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			if f, err := StatFields(pid); err == nil && len(f) > 0 && f[0] != "Z" && f[0] != "X" {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

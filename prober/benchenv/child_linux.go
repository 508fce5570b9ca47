package benchenv

import (
	"bytes"
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// children lists the processes this one started that have not ended (zombies are ended).
func children() []int {
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After the command name, in parentheses and free to hold anything: state, ppid.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[0] != "Z" && f[0] != "X" && f[1] == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

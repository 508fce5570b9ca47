package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// profiler records the CPU of every Detour role and of NATS during one phase with perf.
type profiler struct {
	files map[string]string // process name -> perf.data
	cmds  []*exec.Cmd
}

// profile starts perf record on each process of st but the listeners' holders, into files named
// after the phase.
func (st *stack) profile(phase string) (*profiler, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("-profile: perf (Debian package linux-perf) is not installed")
	}
	pr := &profiler{files: map[string]string{}}
	for _, p := range st.procs {
		if p.role == "listeners" {
			continue
		}
		file := filepath.Join(st.dir, fmt.Sprintf("%s-%s.perf.data", phase, p.name))
		cmd := exec.Command("perf", "record", "-q", "-F", "499", "-g", "-o", file, "-p", fmt.Sprint(p.cmd.Process.Pid))
		if err := cmd.Start(); err != nil {
			pr.stop()
			return nil, fmt.Errorf("start perf: %w", err)
		}
		pr.cmds = append(pr.cmds, cmd)
		pr.files[p.name] = file
	}
	return pr, nil
}

// stop ends every recording (perf writes its file on SIGINT).
func (pr *profiler) stop() {
	for _, c := range pr.cmds {
		_ = c.Process.Signal(syscall.SIGINT)
	}
	for _, c := range pr.cmds {
		_ = c.Wait()
	}
}

// top returns the n functions where the process spent most of its recorded CPU, itself, as
// perf report prints them ("12.3%  name").
func (pr *profiler) top(name string, n int) string {
	out, err := exec.Command("perf", "report", "-i", pr.files[name], "--no-children", "--sort", "symbol",
		"--stdio", "-q", "-g", "none", "--percent-limit", "0.5").Output()
	if err != nil {
		return fmt.Sprintf("    (perf report: %v)\n", err)
	}
	var b strings.Builder
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 3 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		// "12.34%  [.] runtime.mallocgc  - -": the share, user or kernel space, the symbol.
		sym := strings.TrimSuffix(strings.Join(f[2:], " "), " - -")
		fmt.Fprintf(&b, "    %7s %s %s\n", f[0], f[1], sym)
		if n--; n == 0 {
			break
		}
	}
	return b.String()
}

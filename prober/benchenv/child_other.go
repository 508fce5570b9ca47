//go:build !linux

package benchenv

import (
	"os/exec"
	"syscall"
)

// DiesWithThis is Linux-only (Pdeathsig): elsewhere a process cmd starts may outlive this one.
func DiesWithThis(cmd *exec.Cmd) {}

// stopChildren is Linux-only (it reads /proc): elsewhere the processes this one started are
// left to end by themselves.
func stopChildren(sig syscall.Signal) {}

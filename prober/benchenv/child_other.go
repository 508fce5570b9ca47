//go:build !linux

package benchenv

import "os/exec"

// DiesWithThis is Linux-only (Pdeathsig): elsewhere a process cmd starts may outlive this one.
func DiesWithThis(cmd *exec.Cmd) {}

package benchenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Isolated runs this program again, with flag (e.g. "-in-netns") before its arguments, in a
// network namespace of its own where only a loopback interface exists: nothing it sends can
// leave, and the host's connection tracking (which Docker turns on, and whose table 12,000
// connections a second fill within seconds, dropping SYNs) does not apply. The child must call
// LoopbackUp. It reports the child's exit status, or ok=false when no namespace can be made (not
// root), in which case the benchmark runs here.
func Isolated(flag string) (code int, ok bool) {
	name := filepath.Base(os.Args[0])
	self, err := os.Executable()
	if err != nil {
		return 0, false
	}
	cmd := exec.Command(self, append([]string{flag}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: no network namespace of its own (%v); running in the host's, where connection tracking may drop SYNs\n", name, err)
		return 0, false
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), true
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1, true
	}
	return 0, true
}

// LoopbackUp brings up the loopback interface of a new network namespace.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}

package benchenv

import (
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// dieOf ends this program by sig, its default action restored, unless sig is ignored: then it
// returns.
func dieOf(sig syscall.Signal) {
	signal.Reset(sig)
	// Sent to this thread, the signal is handled before Tgkill returns: the runtime ends the
	// program by it, unless it is ignored.
	runtime.LockOSThread()
	_ = unix.Tgkill(os.Getpid(), unix.Gettid(), sig)
}

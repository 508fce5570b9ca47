package benchenv

import (
	"os"
	"os/signal"
	"syscall"
)

// StopSignals are the signals that stop a benchmark, to catch: SIGTERM, and SIGINT (Ctrl-C)
// unless the program started with it ignored, as a shell starts a background job, which Ctrl-C
// at the terminal is not meant for (catching it would end the ignoring, for this program and
// the processes it starts).
func StopSignals() []os.Signal {
	if signal.Ignored(os.Interrupt) {
		return []os.Signal{syscall.SIGTERM}
	}
	return []os.Signal{os.Interrupt, syscall.SIGTERM}
}

// Exit ends this program with status code, as os.Exit does, except that 130 (128 + SIGINT,
// a run that Ctrl-C stopped) ends it by SIGINT: a shell running it in a loop or a script stops
// then, as for any command Ctrl-C killed, where a status of 130 tells it that the program
// handled Ctrl-C and the script goes on. The benchmarks' main calls it with run's status.
// Where SIGINT was ignored when the program started (a shell's background job), it exits 130.
// Once RemoveOnSignal has a signal, Exit leaves the end to it.
func Exit(code int) {
	select {
	case <-stopping:
		select {} // RemoveOnSignal ends the program, by the signal
	default:
	}
	if code == 128+int(syscall.SIGINT) {
		dieOf(syscall.SIGINT)
	}
	os.Exit(code)
}

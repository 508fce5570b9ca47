package benchenv

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// stopping is closed once RemoveOnSignal has a signal: the program's end is then its own, not
// that of a run that saw the processes it started end (Exit waits).
var stopping = make(chan struct{})

// RemoveOnSignal removes dir when one of StopSignals arrives, once the processes this program
// started have ended (passed the signal, then killed), and ends the program by that signal, as
// it would have ended without the handler: a benchmark that runs to its end, stopping on no
// context, leaves no work directory behind when Ctrl-C, timeout(1) or Isolate passing a signal
// on stops it. Called once, it holds for the rest of the program's life.
func RemoveOnSignal(dir string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, StopSignals()...)
	go func() {
		s := (<-sigs).(syscall.Signal)
		close(stopping)
		stopChildren(s)
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		}
		dieOf(s)
		os.Exit(128 + int(s))
	}()
}

//go:build unix

package main

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// watchReader stops the run (leave) as soon as the reader of f, a pipe, has left, as head does
// after its lines: the report's next line may be minutes of measurement away. Anything else (a
// terminal, a file) it leaves to the writes.
func watchReader(f *os.File, leave context.CancelCauseFunc) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	go func() {
		// Asked for no event, poll returns for POLLERR alone: the pipe has no reader.
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for {
			n, err := unix.Poll(fds, -1)
			switch {
			case errors.Is(err, unix.EINTR):
			case err != nil:
				return
			case n > 0:
				leave(errReaderLeft)
				return
			}
		}
	}()
}

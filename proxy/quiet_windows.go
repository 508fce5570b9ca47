package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// wsaPoll is ws2_32's WSAPoll, which golang.org/x/sys/windows does not wrap.
var wsaPoll = windows.NewLazySystemDLL("ws2_32.dll").NewProc("WSAPoll")

// wsaPollFD is WSAPOLLFD.
type wsaPollFD struct {
	fd      windows.Handle
	events  int16
	revents int16
}

// pollRdNorm is POLLRDNORM: data can be read without blocking.
const pollRdNorm = 0x0100

// pending reports whether rc's socket holds something to read, by one WSAPoll that does not
// wait: the non-blocking peek of quiet_unix.go does not exist for Go's sockets on Windows, which
// are not in non-blocking mode. Data waiting, or a peer that closed or reset the connection,
// makes it ready (for POLLRDNORM, POLLHUP or POLLERR); so does any failure of the poll itself.
func pending(rc syscall.RawConn) bool {
	var ready uintptr
	if err := rc.Control(func(fd uintptr) {
		p := wsaPollFD{fd: windows.Handle(fd), events: pollRdNorm}
		ready, _, _ = wsaPoll.Call(uintptr(unsafe.Pointer(&p)), 1, 0)
	}); err != nil {
		return true
	}
	return ready != 0
}

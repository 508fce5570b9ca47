package proxy

import (
	"net"
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

// quiet reports whether nothing can be read from c without waiting: no unsolicited byte and no
// end of stream. It is the check net/http's Transport makes with a reader per idle connection,
// made here when the connection is taken from the pool by one WSAPoll that does not wait: the
// non-blocking peek of quiet_unix.go does not exist for Go's sockets on Windows, which are not
// in non-blocking mode. A connection with data waiting, or whose peer closed or reset it, is
// reported ready (for POLLRDNORM, POLLHUP or POLLERR); so is any failure of the poll itself.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var ready uintptr
	if err := rc.Control(func(fd uintptr) {
		p := wsaPollFD{fd: windows.Handle(fd), events: pollRdNorm}
		ready, _, _ = wsaPoll.Call(uintptr(unsafe.Pointer(&p)), 1, 0)
	}); err != nil {
		return false
	}
	return ready == 0
}

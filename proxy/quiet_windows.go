package proxy

import (
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

// The WSAPoll events: data can be read without blocking (pollRdNorm, the one asked for), the
// connection was closed or reset (pollHup), or failed (pollErr).
const (
	pollRdNorm = 0x0100
	pollHup    = 0x0002
	pollErr    = 0x0001
)

// lookFD looks at the socket fd without waiting, by one WSAPoll that does not wait: the
// non-blocking peek of quiet_unix.go does not exist for Go's sockets on Windows, which are not
// in non-blocking mode. A socket that is not ready holds nothing (lookNothing); one closed by
// its peer with nothing left to read (pollHup alone) has ended (lookEnd); data waiting, an
// error on the socket, or a failure of the poll counts as data (lookData). A peek to tell data
// from the end, as on unix, could block here should a read of net/http's take the data first.
func lookFD(fd uintptr) int {
	p := wsaPollFD{fd: windows.Handle(fd), events: pollRdNorm}
	ready, _, _ := wsaPoll.Call(uintptr(unsafe.Pointer(&p)), 1, 0)
	switch {
	case ready == 0:
		return lookNothing
	case ready == 1 && p.revents&(pollHup|pollRdNorm|pollErr) == pollHup:
		return lookEnd
	}
	return lookData
}

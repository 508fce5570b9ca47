package proxy

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// resetErrnos are the system errors of a connection its peer reset or closed under a write:
// Windows' sockets report WSAECONNRESET, WSAECONNABORTED or WSAENETRESET, and a read on a reset
// connection may fail with ERROR_NETNAME_DELETED, none of which Go's syscall.ECONNRESET (a number
// of Go's own there) matches.
var resetErrnos = []error{windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.WSAENETRESET, windows.ERROR_NETNAME_DELETED, syscall.ECONNRESET, syscall.EPIPE}

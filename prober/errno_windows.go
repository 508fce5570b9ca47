package prober

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// The system errors each class of failure is made of. Windows' sockets report WSA errors
// (WSAECONNREFUSED, WSAECONNRESET, …, and ERROR_NETNAME_DELETED for a read on a reset
// connection), which Go's syscall.ECONNREFUSED and the like (numbers of Go's own there) never
// match; both are listed.
var (
	refusedErrnos     = []error{windows.WSAECONNREFUSED, syscall.ECONNREFUSED}
	resetErrnos       = []error{windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.WSAENETRESET, windows.ERROR_NETNAME_DELETED, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}
	unreachableErrnos = []error{windows.WSAEHOSTUNREACH, windows.WSAENETUNREACH, windows.WSAEADDRNOTAVAIL, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL}
	permissionErrnos  = []error{windows.WSAEACCES, syscall.EACCES, syscall.EPERM}
)

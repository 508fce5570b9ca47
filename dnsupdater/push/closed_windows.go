package push

import "syscall"

// closedErrnos are the system errors of a connection the primary closed or reset: Windows'
// sockets report WSAECONNRESET or WSAECONNABORTED, and a read on a reset connection may fail
// with ERROR_NETNAME_DELETED, none of which Go's syscall.ECONNRESET (a number of Go's own
// there) matches.
var closedErrnos = []error{syscall.WSAECONNRESET, syscall.WSAECONNABORTED, syscall.ERROR_NETNAME_DELETED, syscall.ECONNRESET, syscall.EPIPE}

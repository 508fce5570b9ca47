package proxy

import "syscall"

// resetErrnos are the system errors of a connection its peer reset or closed under a write:
// Windows' sockets report WSAECONNRESET or WSAECONNABORTED, which Go's syscall.ECONNRESET (a
// number of Go's own there) never matches.
var resetErrnos = []error{syscall.WSAECONNRESET, syscall.WSAECONNABORTED, syscall.ECONNRESET, syscall.EPIPE}

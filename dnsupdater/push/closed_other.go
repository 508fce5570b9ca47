//go:build !windows

package push

import "syscall"

// closedErrnos are the system errors of a connection the primary closed or reset.
var closedErrnos = []error{syscall.ECONNRESET, syscall.EPIPE}

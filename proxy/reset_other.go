//go:build !windows

package proxy

import "syscall"

// resetErrnos are the system errors of a connection its peer reset or closed under a write.
var resetErrnos = []error{syscall.ECONNRESET, syscall.EPIPE}

//go:build !windows

package prober

import "syscall"

// The system errors each class of failure is made of.
var (
	refusedErrnos     = []error{syscall.ECONNREFUSED}
	resetErrnos       = []error{syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}
	unreachableErrnos = []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL}
	permissionErrnos  = []error{syscall.EACCES, syscall.EPERM}
)

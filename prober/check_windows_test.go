package prober

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/windows"
)

// Windows' sockets fail with WSA errors, which the classes must name as they name Linux's.
func TestClassifyNamesWindowsSocketErrors(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connectex", err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{op(windows.WSAECONNREFUSED), ClassRefused},
		{op(windows.WSAECONNRESET), ClassReset},
		{op(windows.WSAECONNABORTED), ClassReset},
		{op(windows.ERROR_NETNAME_DELETED), ClassReset},
		{op(windows.WSAEHOSTUNREACH), ClassUnreachable},
		{op(windows.WSAENETUNREACH), ClassUnreachable},
		{op(windows.WSAEACCES), ClassPermission},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

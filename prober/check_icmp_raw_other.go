//go:build !linux

package prober

import "net"

// forceReadBuffer reports false: only Linux lets a socket's buffer past its system's cap.
func forceReadBuffer(*net.IPConn, int) bool { return false }

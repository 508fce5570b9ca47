//go:build !unix

package proxy

// fileLimit is 0, unknown, where there is no RLIMIT_NOFILE: a Windows process may hold about 16
// million handles, sockets included.
func fileLimit() uint64 { return 0 }

//go:build !linux

package benchenv

import "os"

// Exit is os.Exit: dying of SIGINT as Linux's Exit does is not done elsewhere.
func Exit(code int) { os.Exit(code) }

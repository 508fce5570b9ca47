//go:build !unix

package main

import (
	"context"
	"os"
)

// watchReader does nothing where a pipe cannot be polled for its reader leaving (see
// reader_unix.go): there, a run whose report's reader left goes on to its end.
func watchReader(*os.File, context.CancelCauseFunc) {}

//go:build !unix || (solaris && !illumos)

package api

import "os"

// lockTokens does nothing where flock is not available (Windows, Solaris): two detour token
// create or revoke must not be run there at once on one file.
func lockTokens(*os.File) error { return nil }

//go:build !unix || (solaris && !illumos)

package dnsupdater

import "os"

// lock does nothing where flock is not available (Windows, Solaris): two servers must not be
// given one data directory there.
func lock(*os.File) error { return nil }

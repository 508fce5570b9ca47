//go:build !unix

package dnsupdater

import "os"

// lock does nothing where flock is not available: two servers must not be given one data
// directory there.
func lock(*os.File) error { return nil }

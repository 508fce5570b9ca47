//go:build !unix || (solaris && !illumos)

package up

// lockDataDir does nothing where flock is not available (Windows, Solaris): two detour up must
// not be given one data directory there.
func lockDataDir(string) (release func(), err error) { return func() {}, nil }

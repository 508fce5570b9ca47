//go:build !linux

package benchenv

// Isolate is Linux-only: elsewhere the run stays in the host's network namespace.
func Isolate(name string) (Netns, error) {
	return Host("no namespace of its own: network namespaces are Linux only"), nil
}

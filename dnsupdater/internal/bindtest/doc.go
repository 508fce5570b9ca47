// Package bindtest runs a real BIND 9 on a loopback port for tests: a primary for RFC 2136
// pushes, read back with dig, or a secondary of Detour. Tests skip, naming the package to
// install, where named or dig is missing.
package bindtest

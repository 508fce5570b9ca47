// Package knottest runs a real Knot DNS server on a loopback port for tests: as a primary of
// given zone files (the peer of the differential conformance test, and a primary that Detour
// pushes to) or as a secondary of Detour. Tests skip, naming the package to install, where knotd is missing.
package knottest

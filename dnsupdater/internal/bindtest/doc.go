// Package bindtest runs a real BIND 9 primary on a loopback port for tests of RFC 2136 pushes,
// and reads its zone back with dig. Tests skip, naming the package to install, where named or
// dig is missing.
package bindtest

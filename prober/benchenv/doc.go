// Package benchenv is what Detour's benchmark commands share: running again in a network
// namespace of their own, where nothing they send leaves and the host's connection tracking
// does not apply, ending as a command Ctrl-C killed when Ctrl-C stopped them, and reading the
// CPU time and peak memory of the processes they start.
package benchenv
